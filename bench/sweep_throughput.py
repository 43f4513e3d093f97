"""Trials per hour of ``ablate sweep`` on tiny trials: 1 vs 2 local workers (target >= 1.8x), or, with
``--per-worker N``, 2 workers running 1 vs N trials each before they exit (the start-up saved).

Each repeat runs the same grid study twice, once per setting, in fresh directories (fresh
SQLite stores), alternating the order so machine noise hits both. Wall time counts everything
a user waits for: the launcher's start-up and config checks, each worker's process start-up,
training, evaluation and logging. Medians over repeats and their ratio are printed.

    python bench/sweep_throughput.py --repeats 3 --cells 8
    python bench/sweep_throughput.py --repeats 3 --cells 8 --per-worker 4
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


def one_sweep(root: Path, cells: int, workers: int, per_worker: int = 1) -> float:
    """Wall seconds of one ``ablate sweep`` of ``cells`` tiny trials with ``workers`` workers."""
    root.mkdir(parents=True)
    study = root / "bench.yaml"
    study.write_text(yaml.safe_dump({"description": "throughput", "overrides": TINY,
                                     "grid": {"seed": list(range(cells))}}))  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "ablate", "sweep", f"study={study}", f"sweep.workers={workers}",
         f"sweep.trials_per_worker={per_worker}", "sweep.progress=false"],
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
    parser.add_argument(
        "--per-worker", type=int, default=0, help="compare 1 vs N trials per worker (2 workers)"
    )
    args = parser.parse_args()
    # (label, workers, trials per worker) of the two settings compared
    settings = [("1 worker", 1, 1), ("2 workers", 2, 1)]
    if args.per_worker:
        settings = [("1 trial/worker", 2, 1), (f"{args.per_worker} trials/worker", 2, args.per_worker)]
    rates: dict[str, list[float]] = {label: [] for label, _, _ in settings}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for j, (label, workers, per_worker) in enumerate(settings if i % 2 == 0 else settings[::-1]):
                seconds = one_sweep(Path(tmp) / f"r{i}s{j}", args.cells, workers, per_worker)
                rates[label].append(args.cells / seconds * 3600)
                print(f"repeat {i} {label}: {seconds:6.1f} s, {rates[label][-1]:6.1f} trials/h", flush=True)
    (a, _, _), (b, _, _) = settings
    first, second = statistics.median(rates[a]), statistics.median(rates[b])
    print(f"median trials/hour: {a} {first:.1f}, {b} {second:.1f}, ratio {second / first:.2f}")
    print(f"median seconds a trial: {a} {3600 / first:.1f}, {b} {3600 / second:.1f}")


if __name__ == "__main__":
    main()
