"""Training steps with each rollout side by side: step time, generated tokens/s and MFU.

Runs ``ablate train OVERRIDES rollout=R`` for every ``--rollouts`` R, alternating over repeats so
machine noise hits them all, a few steps each (the first, with its warm-up, not counted), with
evaluation cut to a few questions. From each step of the run's ``train_log.csv``:

- generated tokens/s: ``completions/mean_length`` x ``batch_size`` over the step time;
- trained tokens: the step's increase of TRL's ``num_tokens`` (prompts and completions);
- MFU: ``6 N`` FLOPs per trained token (forward and backward) over the step time and this device's
  measured matmul rate (the best of a few square matmuls in the run's dtype); "with generation"
  adds ``2 N`` per generated token. Attention FLOPs are left out (small at these lengths).

    python bench/rollout_cost.py --rollouts hf vllm experiment=paper_0_5b   # a CUDA machine, vllm installed
    python bench/rollout_cost.py --rollouts hf --repeats 1 --steps 4 experiment=repro_cpu  # this CPU
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from hydra.utils import instantiate

from ablate.config import compose
from ablate.models import load_model

FAST = ["eval_limit=8", "eval_every=0", "epochs=null", "diagnostics.start=false", "diagnostics.stops=false"]


def matmul_rate(device: str, dtype: torch.dtype, size: int, repeats: int = 5) -> float:
    """The best FLOP/s of ``size``-square matmuls on ``device``."""
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def one_run(root: Path, overrides: list[str], rollout: str, steps: int) -> pd.DataFrame:
    out = root / f"{rollout}-{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "ablate", "train", *overrides, f"rollout={rollout}", f"steps={steps}", *FAST,
           f"output_dir={out}", f"tracking.uri=sqlite:///{root}/mlflow.db"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"rollout={rollout}: ablate train failed:\n{done.stderr[-3000:]}")
    log = pd.read_csv(out / "train_log.csv")
    log = log[log["step_time"].notna()].reset_index(drop=True)
    log["trained_tokens"] = log["num_tokens"].diff()
    return log.iloc[1:]  # the first step warms up (and vLLM's engine starts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", nargs="+", default=["hf", "vllm"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("overrides", nargs="*", help="ablate train overrides for every rollout")
    args = parser.parse_args()

    cfg = compose(args.overrides)
    model, _ = load_model(instantiate(cfg.model, _convert_="all"))
    params = sum(p.numel() for p in model.parameters())
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = next(model.parameters()).dtype if device == "cuda" else torch.float32
    del model
    peak = matmul_rate(device, dtype, 8192 if device == "cuda" else 1024)
    print(f"{params / 1e6:.2f}M parameters; {device} {dtype} matmul rate {peak / 1e9:.1f} GFLOP/s "
          f"({torch.get_num_threads()} threads)")  # fmt: skip

    steps: dict[str, list[pd.DataFrame]] = {r: [] for r in args.rollouts}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for rollout in args.rollouts:
                log = one_run(Path(tmp), args.overrides, rollout, args.steps)
                steps[rollout].append(log)
                print(f"repeat {repeat} rollout={rollout}: median step {log['step_time'].median():.3f} s")

    first = None
    for rollout, runs in steps.items():
        per_run = []
        for log in runs:
            time_s = log["step_time"].median()
            generated = (log["completions/mean_length"] * cfg.batch_size).median()
            trained = log["trained_tokens"].median()
            per_run.append((time_s, generated / time_s, 6 * params * trained / time_s / peak,
                            (6 * params * trained + 2 * params * generated) / time_s / peak))  # fmt: skip
        time_s, gen_rate, mfu, mfu_gen = (statistics.median(col) for col in zip(*per_run, strict=True))
        first = first or time_s
        print(f"rollout={rollout:5s} step {time_s:7.3f} s ({first / time_s:.2f}x the first)  "
              f"generated {gen_rate:9.1f} tokens/s  "
              f"MFU {100 * mfu:5.2f}% (with generation {100 * mfu_gen:5.2f}%)")  # fmt: skip


if __name__ == "__main__":
    main()
