"""Step time of ``ablate train`` (tracking, callbacks, reward variant) vs a bare TRL GRPO script.

Both train the same tiny model on the same data with the same reward object and batch; the
bare one has no MLflow and no ablate callbacks. Runs alternate (bare, ablate, bare, ...) so
machine noise hits both, and the ratio of median step times is printed.

    python bench/train_overhead.py --repeats 5 --steps 20
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
from hydra.utils import instantiate

from ablate.config import compose
from ablate.models import load_model
from ablate.train import run, to_dataset, training_args


def config(steps: int, out: Path, overrides: list[str]):
    return compose(
        [
            f"steps={steps}",
            "eval_limit=8",
            f"output_dir={out}",
            f"tracking.uri=sqlite:///{out}.db",
            *overrides,
        ]
    )


def bare_trl(cfg) -> list[float]:
    table = instantiate(cfg.data).load()
    train = table[table["split"] == "train"]
    model, tokenizer = load_model(instantiate(cfg.model))
    trainer = instantiate(cfg.algo.trainer)(
        model=model,
        reward_funcs=[instantiate(cfg.reward).fit(train)],
        args=training_args(cfg, Path(cfg.output_dir)),
        train_dataset=to_dataset(train),
        processing_class=tokenizer,
    )
    trainer.train()
    return [h["step_time"] for h in trainer.state.log_history if "step_time" in h]


def platform(cfg) -> list[float]:
    run(cfg)
    return pd.read_csv(Path(cfg.output_dir) / "train_log.csv")["step_time"].tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both, e.g. algo=rloo")
    args = parser.parse_args()
    medians: dict[str, list[float]] = {"bare TRL": [], "ablate train": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for name, fn in (("bare TRL", bare_trl), ("ablate train", platform)):
                start = time.perf_counter()
                steps = fn(config(args.steps, Path(tmp) / f"{name.split()[0]}{i}", args.overrides))
                medians[name].append(statistics.median(steps[1:]))  # the first step warms up
                print(f"repeat {i} {name:13s} median step {medians[name][-1] * 1e3:7.1f} ms"
                      f"  (whole run {time.perf_counter() - start:5.1f} s)", flush=True)  # fmt: skip
    bare, ours = statistics.median(medians["bare TRL"]), statistics.median(medians["ablate train"])
    print(f"median step time: bare TRL {bare * 1e3:.1f} ms, ablate train {ours * 1e3:.1f} ms", end="")
    print(f", ratio {ours / bare:.3f}")


if __name__ == "__main__":
    main()
