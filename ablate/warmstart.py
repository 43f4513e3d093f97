"""``ablate warmstart``: supervised fine-tuning (TRL's SFTTrainer) of a from-scratch policy on solutions.

RL from a randomly initialised model has almost no reward signal. The warm start teaches the
tiny model the synthetic exams' format and arithmetic with solutions written in one of three
styles, drawn per question and independent of its value:

- ``full``: one partial sum per line (``12+7=19``), the longest and easiest to get right;
- ``pairs``: two numbers added per line (``12+7+30=49``), half the steps and harder;
- ``direct``: only ``Answer: N``, the shortest and hardest.

So the RL starting policy samples answers of varying length, and longer working raises its
chance of a correct answer: the trade-off RLEV's value scale acts on. The checkpoint is cached
under ``cache_dir`` keyed by the whole config; ``model=tiny_warm`` trains it on first use.

>>> solution([12, 7, 30], "pairs")
'12+7+30=49\\nAnswer: 49'
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ablate.data.synthetic import SyntheticExams, worked_solution
from ablate.models import TinyModelConfig

log = logging.getLogger(__name__)

PER_LINE = {"full": 1, "pairs": 2, "direct": 0}  # numbers added per line of working
STYLES = tuple(PER_LINE)


def solution(terms: list[int], style: str) -> str:
    """The worked solution of ``sum(terms)`` in ``style`` (see the module docstring)."""
    if style not in PER_LINE:
        raise ValueError(f"solution style {style!r}: valid choices are {', '.join(STYLES)}")
    return worked_solution(terms, PER_LINE[style])


@dataclass
class WarmStartConfig:
    """A from-scratch policy after supervised fine-tuning on worked solutions (conf/model/tiny_warm.yaml)."""

    base: TinyModelConfig = field(default_factory=TinyModelConfig)  # the from-scratch architecture
    data: SyntheticExams = field(default_factory=lambda: SyntheticExams(seed=1000))  # SFT exams (own seed)
    styles: dict[str, float] = field(
        default_factory=lambda: {"full": 0.4, "pairs": 0.3, "direct": 0.3}
    )  # share of each solution style in the SFT data
    max_steps: int = 1000  # optimiser steps of supervised fine-tuning
    batch_size: int = 64  # sequences per step
    lr: float = 2e-3  # peak learning rate (cosine decay, 3% warm-up)
    seed: int = 0  # SFT data order, style draws and dropout
    eval_questions: int = 256  # held-out SFT questions scored greedily after training
    max_new_tokens: int = 96  # generation cap of that evaluation
    cache_dir: str = ".cache/ablate/models"  # where checkpoints are kept
    lora: dict[str, Any] | None = None  # peft LoraConfig keys for the RL run on top; None: full

    def key(self) -> str:
        fields = asdict(self)
        for name in ("cache_dir", "lora", "eval_questions", "max_new_tokens"):
            fields.pop(name)
        fields["base"] = self.base.key()  # the architecture, as the tiny model's own cache keys it
        return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:12]

    def checkpoint(self) -> Path:
        """The cached checkpoint's directory, trained first if it is not there."""
        return warm_path(self)


def sft_dataset(cfg: WarmStartConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Prompt/completion rows for SFT (the train split) and the held-out test split, styles drawn per row."""
    names = list(cfg.styles)
    unknown = sorted(set(names) - set(STYLES))
    if unknown or not names:
        raise ValueError(f"model.styles: unknown style(s) {unknown}; valid choices are {', '.join(STYLES)}")
    weights = np.array([cfg.styles[n] for n in names], dtype=float)
    if (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"model.styles={cfg.styles}: shares must be >= 0 and not all 0")
    table = cfg.data.load()
    rng = np.random.default_rng(cfg.seed)
    styles = rng.choice(names, size=len(table), p=weights / weights.sum())
    terms = table["prompt"].str.extract(r"Add: ([\d +]+)\n", expand=False)
    if terms.isna().any():
        raise ValueError("model.data: the warm start needs the synthetic exams' 'Add: a + b' prompts")
    table = table.assign(
        style=styles,
        completion=[
            solution([int(t) for t in ts.split(" + ")], s) for ts, s in zip(terms, styles, strict=True)
        ],
    )
    return table[table["split"] == "train"], table[table["split"] == "test"]


def warm_start(cfg: WarmStartConfig, out: Path) -> dict[str, float]:
    """Train the checkpoint into ``out`` and return its held-out metrics (also in ``warmstart.json``)."""
    import datasets
    import torch
    from trl import SFTConfig, SFTTrainer

    from ablate import metrics
    from ablate.evaluate import predict
    from ablate.models import load_model
    from ablate.verify import Verifier

    train, test = sft_dataset(cfg)
    model, tokenizer = load_model(cfg.base)
    args = SFTConfig(
        output_dir=str(out / "trainer"),
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.lr,
        lr_scheduler_type="cosine",
        warmup_steps=0.03,
        weight_decay=0.0,
        seed=cfg.seed,
        max_length=cfg.base.max_position_embeddings,
        logging_steps=50,
        save_strategy="no",
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        disable_tqdm=True,
    )
    pairs = train[["prompt", "completion"]].reset_index(drop=True)
    pairs.attrs = {}  # the loader's skip report is not a dataset column
    rows = datasets.Dataset.from_pandas(pairs, preserve_index=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer)
    started = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - started
    trainer.model.generation_config.eos_token_id = tokenizer.eos_token_id
    trainer.save_model(str(out))
    tokenizer.save_pretrained(str(out))
    shutil.rmtree(out / "trainer", ignore_errors=True)

    held_out = test.sample(min(cfg.eval_questions, len(test)), random_state=cfg.seed)
    predictions = predict(trainer.model, tokenizer, held_out, Verifier(), cfg.max_new_tokens, 64)
    summary = metrics.summary(predictions)
    torch.manual_seed(cfg.seed)  # the sampled table is reproducible
    sampled = sample_styles(trainer.model, tokenizer, held_out, Verifier(), cfg.max_new_tokens)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    report = {
        **{k: float(v) for k, v in summary.items()},
        "length_std": float(predictions["length"].std()),
        "sft_seconds": round(seconds, 1),
        "sft_final_loss": float(losses[-1]) if losses else float(result.training_loss),
        "sft_rows": len(train),
        "sampled_by_style": sampled,
        "config": asdict(cfg),
    }
    (out / "warmstart.json").write_text(json.dumps(report, indent=2, default=str))
    return report


def written_style(completion: str) -> str:
    """Which style a completion is written in, from its shape."""
    steps = [line for line in completion.splitlines() if "=" in line]
    if not steps:
        return "direct"
    return "full" if all(line.count("+") == 1 for line in steps) else "pairs"


def sample_styles(
    model: Any, tokenizer: Any, questions: pd.DataFrame, verifier: Any, max_new_tokens: int
) -> dict:
    """Share and accuracy (percent) and length of each written style among completions sampled at
    temperature 1.

    This is the RL starting policy as RL sees it: whether longer working is more often right.
    """
    from ablate.evaluate import predict

    frame = predict(model, tokenizer, questions, verifier, max_new_tokens, len(questions), sample=True)
    frame = frame.assign(
        style=frame["completion"].map(written_style),
        correct=100.0 * frame["correct"],  # percent, as the paper's Acc
    )
    by = frame.groupby("style").agg(
        share=("correct", "size"), acc=("correct", "mean"), length=("length", "mean")
    )
    by["share"] = 100.0 * by["share"] / len(frame)
    return {"acc": float(frame["correct"].mean()), **by.round(2).to_dict("index")}


def warm_path(cfg: WarmStartConfig) -> Path:
    """Train the warm start once per config (one process at a time, under a file lock) and return it."""
    path = Path(cfg.cache_dir) / f"warm-{cfg.key()}"
    if (path / "warmstart.json").exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f"{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # sweep workers wait for the first one's checkpoint
        if not (path / "warmstart.json").exists():
            log.info("warm start %s not cached: training it (ablate warmstart)", path)
            tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
            try:
                warm_start(cfg, tmp)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)  # no half-written checkpoint is left behind
                raise
            tmp.rename(path)
    return path


def summary_line(path: Path) -> str:
    report = json.loads((path / "warmstart.json").read_text())
    return (
        f"warm start {path}: held-out Acc {report['acc']:.1f}, H-Acc {report['h_acc']:.1f}, "
        f"length {report['length']:.1f} (sd {report['length_std']:.1f}); "
        f"SFT {report['sft_rows']} rows, final loss {report['sft_final_loss']:.3f}, "
        f"{report['sft_seconds']:.0f} s"
    )
