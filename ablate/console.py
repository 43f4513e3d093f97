"""What ``ablate train`` prints while it trains: a progress bar with a few live numbers on a terminal,
one compact line every ``console_every`` steps otherwise (a log file, a sweep worker), instead of
transformers' dict of ~40 keys per step. Every number is in MLflow and ``train_log.csv`` anyway.

>>> compact({"reward": 0.4375, "reward/correct_rate": 0.25, "completions/mean_length": 41.2, "x": 1})
'reward 0.4375  correct 0.25  length 41.2'
"""

from __future__ import annotations

import re
import sys
import warnings
from typing import Any, TextIO

from transformers import PrinterCallback, ProgressCallback, TrainerCallback

# TRL's per-step keys worth watching live, and how the console names them.
LIVE = {
    "reward": "reward",
    "reward/correct_rate": "correct",
    "completions/mean_length": "length",
    "step_time": "s/step",
}

# Deprecation notices that transformers and TRL raise about each other's calls: nothing a user of
# ablate can act on (TRL 1.16 calls names that transformers 5 renamed).
LIBRARY_WARNINGS = (
    "`gradient_checkpointing",  # `gradient_checkpointing`, `_enable`, `_disable` "is deprecated ..."
    "`is_gradient_checkpointing` is deprecated",
    "`past_key_values` is deprecated",
    "`torch_dtype` is deprecated",
)


def quiet_library_warnings() -> None:
    """Filter the warnings that start as ``LIBRARY_WARNINGS`` do (any other warning still shows)."""
    for start in LIBRARY_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(start), category=FutureWarning)


def compact(logs: dict[str, Any]) -> str:
    """The live numbers of one step's logs, in a few characters."""
    return "  ".join(f"{label} {logs[key]:.4g}" for key, label in LIVE.items() if key in logs)


class Console(TrainerCallback):
    """Training progress for a person: a bar on a terminal, else a line every ``every`` steps."""

    def __init__(self, every: int, stream: TextIO | None = None):
        self.every, self.stream = max(every, 1), stream or sys.stdout
        self.bar: Any = None

    @staticmethod
    def replace_printer(trainer: Any, console: Console | None) -> None:
        """Put ``console`` where transformers' own printer or progress bar was (None: print nothing, as
        the ranks other than 0 of a multi-process run)."""
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        if console is not None:
            trainer.add_callback(console)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.stream.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=state.max_steps, desc="train", unit="step", file=self.stream, dynamic_ncols=True
            )

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any):
        if not logs or "loss" not in logs:  # TRL's per-step training logs carry the loss
            return
        line = compact(logs)
        if self.bar is not None:
            self.bar.set_postfix_str(line, refresh=False)
            self.bar.update(state.global_step - self.bar.n)
        elif state.global_step % self.every == 0 or state.global_step in (1, state.max_steps):
            print(f"step {state.global_step}/{state.max_steps}  {line}", file=self.stream, flush=True)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
