"""Step time of ``ablate train`` with the EOS-gradient diagnostics on vs off, side by side.

Runs alternate (off, on, off, ...) on the same model, data and seed; prints the ratio of median
step times. ``--larger`` uses a wider, deeper from-scratch model that is still CPU-feasible.

    python bench/eos_overhead.py --repeats 5 --steps 20
    python bench/eos_overhead.py --repeats 5 --steps 10 --larger
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import pandas as pd

from ablate.config import compose
from ablate.train import run

LARGER = ["model.hidden_size=256", "model.layers=4", "model.heads=8", "model.intermediate_size=768"]


def step_times(out: Path, eos: bool, steps: int, overrides: list[str]) -> list[float]:
    cfg = compose(
        [f"steps={steps}", "eval_limit=8", f"diagnostics.eos={str(eos).lower()}", f"output_dir={out}",
         f"tracking.uri=sqlite:///{out}.db", *overrides]
    )  # fmt: skip
    run(cfg)
    return pd.read_csv(out / "train_log.csv")["step_time"].tolist()[1:]  # the first step warms up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--larger", action="store_true", help="hidden 256, 4 layers, 8 heads")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both, e.g. algo=rloo")
    args = parser.parse_args()
    overrides = [*(LARGER if args.larger else []), *args.overrides]
    medians: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for eos in (False, True):
                times = step_times(Path(tmp) / f"{'on' if eos else 'off'}{i}", eos, args.steps, overrides)
                medians[eos].append(statistics.median(times))
                state = "on " if eos else "off"
                print(f"repeat {i} diagnostics {state} median step {medians[eos][-1] * 1e3:7.1f} ms")
    off, on = statistics.median(medians[False]), statistics.median(medians[True])
    print(f"median step time: diagnostics off {off * 1e3:.1f} ms, on {on * 1e3:.1f} ms, ratio {on / off:.3f}")


if __name__ == "__main__":
    main()
