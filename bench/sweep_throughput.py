"""Trials per hour of ``ablate sweep`` with 1 vs 2 local workers, on tiny trials (target >= 1.8x).

Each repeat runs the same grid study twice, once per worker count, in fresh directories
(fresh SQLite stores), alternating the order so machine noise hits both. Wall time counts
everything a user waits for: the launcher's start-up and config checks, each trial's process
start-up, training, evaluation and logging. Medians over repeats and their ratio are printed.

    python bench/sweep_throughput.py --repeats 3 --cells 8
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

TINY = [
    "steps=4", "batch_size=8", "num_generations=4", "max_completion_length=12", "eval_limit=16",
    "model.hidden_size=32", "model.layers=1", "model.heads=2", "model.intermediate_size=64",
    "data.num_exams=8", "data.test_fraction=0.25", "data.terms=[2,2]", "data.max_operand=2",
]  # fmt: skip


def one_sweep(root: Path, cells: int, workers: int) -> float:
    """Wall seconds of one ``ablate sweep`` of ``cells`` tiny trials with ``workers`` workers."""
    root.mkdir(parents=True)
    study = root / "bench.yaml"
    study.write_text(yaml.safe_dump({"description": "throughput", "overrides": TINY,
                                     "grid": {"seed": list(range(cells))}}))  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "ablate", "sweep", f"study={study}", f"sweep.workers={workers}",
         "sweep.progress=false"],
        cwd=root, capture_output=True, text=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"sweep failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cells", type=int, default=8, help="tiny trials per sweep")
    args = parser.parse_args()
    rates: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for workers in (1, 2) if i % 2 == 0 else (2, 1):
                seconds = one_sweep(Path(tmp) / f"r{i}w{workers}", args.cells, workers)
                rates[workers].append(args.cells / seconds * 3600)
                print(f"repeat {i} workers={workers}: {seconds:6.1f} s, {rates[workers][-1]:6.1f} trials/h",
                      flush=True)  # fmt: skip
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    print(f"median trials/hour: 1 worker {one:.1f}, 2 workers {two:.1f}, ratio {two / one:.2f}")


if __name__ == "__main__":
    main()
