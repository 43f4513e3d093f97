"""Where one reproduction-scale run's time goes, and how far its steps are from the compute bound.

Runs ``ablate train`` with the reproduction's settings (``experiment=repro_cpu``, RLOO, an
evaluation every 10 steps and at the end) as a sweep worker would: its own process, one
thread. With ``--baseline REF`` the same run of the code at git ``REF`` (a temporary worktree)
goes side by side: each repeat starts both at once, one per core, as a 2-worker sweep does.
Prints medians over repeats of the time split:

- start: process start to the first training step (imports, config, MLflow, data, model);
- steps: TRL's training steps, split into generation and training (scoring, loss, backward, update);
- evaluation: the greedy evaluations (periodic and final);
- end: the last step and final evaluation to process exit (artifacts, figure, MLflow);
- between: the rest (callbacks and logging between steps);

and the steps' compute bound: the FLOPs of the shapes each step ran (counted by
``torch.utils.flop_counter`` on the policy, replayed shape by shape) over this machine's
single-thread matmul rate.

    python bench/run_cost.py --baseline 1d46711 --repeats 3 model.max_steps=2000

(``model.max_steps=2000``: the shipped ``tiny_warm``, which trained 1000 steps before 20e82bd.)
    python bench/run_cost.py --repeats 1 steps=20          # any ablate train override

With ``--in-process N`` each repeat runs N runs one after another in one process, as a sweep worker
with ``sweep.trials_per_worker=N`` does (``train.run`` on a composed config), and prints each run's
fixed cost: a later run pays no imports, only its own set-up and ending.

    python bench/run_cost.py --in-process 3 --repeats 3 model.max_steps=2000 steps=10
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib.abc
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUN = ["experiment=repro_cpu", "algo=rloo", "reward=correctness", "seed=0", "eval_every=10"]


# --- the child: one run with timing hooks ------------------------------------------------------


class Timings:
    """Phase durations and the shapes each step ran, filled by the hooks below."""

    def __init__(self, t0: float):
        self.t0, self.marks = t0, {}
        self.steps, self.generation, self.evals = [], [], []
        self.gen_shapes, self.fwd_shapes = [], []
        self.runs: list[dict[str, float]] = []  # --in-process: each finished run's marks

    def run_ended(self) -> None:
        """Close one run of several in this process: its first and last step, final evaluation, return."""
        self.runs.append({**self.marks, "final_eval": self.evals[-1], "returned": time.time()})
        self.marks = {}

    def wrap(self, cls: type, name: str, record) -> None:
        original = getattr(cls, name)

        def timed(*args, **kwargs):
            start = time.time()
            out = original(*args, **kwargs)
            record(start, time.time(), args, kwargs, out)
            return out

        setattr(cls, name, timed)


def install_hooks(t: Timings) -> None:
    """Time the trainer's steps and generation and ablate's evaluations, whichever code version runs."""

    def on_step(start, end, args, kwargs, out):
        t.marks.setdefault("first_step", start)
        t.marks["last_step"] = end
        t.steps.append(end - start)

    def on_generate(start, end, args, kwargs, out):
        prompts = args[1]
        t.generation.append(end - start)
        t.gen_shapes.append((len(prompts), max(map(len, prompts)), max(map(len, out))))

    def on_forward(start, end, args, kwargs, out):
        import torch

        input_ids, keep = args[2], args[4]
        t.fwd_shapes.append((*input_ids.shape, keep, torch.is_grad_enabled()))

    def on_eval(start, end, args, kwargs, out):
        t.evals.append(end - start)
        t.marks["last_eval_end"] = end

    hooks = {
        "trl.trainer.rloo_trainer": [
            ("RLOOTrainer", "training_step", on_step),
            ("RLOOTrainer", "_generate_single_turn", on_generate),
            ("RLOOTrainer", "_get_per_token_logps_and_entropies", on_forward),
        ],
        "ablate.train": [("Evaluator", "evaluate", on_eval)],
    }

    class AfterImport(importlib.abc.MetaPathFinder):
        # Patch a module right after it loads, so the hooks change no import order or cost.
        def find_spec(self, name, path, target=None):
            if name not in hooks:
                return None
            sys.meta_path.remove(self)
            try:
                spec = importlib.util.find_spec(name)
            finally:
                sys.meta_path.insert(0, self)
            loader = spec.loader
            exec_module = loader.exec_module

            def exec_and_patch(module):
                exec_module(module)
                for cls, method, record in hooks[name]:
                    t.wrap(getattr(module, cls), method, record)

            loader.exec_module = exec_and_patch
            return spec

    sys.meta_path.insert(0, AfterImport())


def child(out: Path, t0: float, overrides: list[str], runs: int = 1) -> None:
    t = Timings(t0)
    install_hooks(t)
    keys = ("t0", "marks", "steps", "generation", "evals", "gen_shapes", "fwd_shapes", "runs")
    atexit.register(lambda: out.write_text(json.dumps({k: getattr(t, k) for k in keys})))
    if runs == 1:
        from ablate.cli import main

        main(["train", *overrides])
        return
    from ablate.config import compose
    from ablate.train import run

    for k in range(runs):  # as a sweep worker runs its trials: compose, run, next
        run(compose([*overrides, f"output_dir={out.parent}/run{k}"]))
        t.run_ended()


def fixed_costs(root: Path) -> list[tuple[float, float]]:
    """(start, end) of each run of an --in-process child: the first from process start, each later
    one from the previous run's return; its end from its last step and final evaluation to its return."""
    t = json.loads((root / "timing.json").read_text())
    began = [t["t0"], *(r["returned"] for r in t["runs"][:-1])]
    return [
        (r["first_step"] - b, r["returned"] - r["last_step"] - r["final_eval"])
        for b, r in zip(began, t["runs"], strict=True)
    ]


# --- the parent: runs side by side, FLOPs, table ----------------------------------------------


def shared_cache(tmp: Path) -> Path:
    """A model cache both trees read: this repo's built models and its shipped warm starts, so an
    older tree that did not look in ``checkpoints/`` loads the same weights instead of training them."""
    cache = tmp / "cache"
    (cache / "models").mkdir(parents=True)
    built = REPO / ".cache" / "ablate" / "models"
    for path in [*REPO.glob("checkpoints/warm-*"), *(built.iterdir() if built.exists() else [])]:
        link = cache / "models" / path.name
        if path.is_dir() and not link.exists():
            link.symlink_to(path)
    return cache


def start_run(
    tree: Path, root: Path, cache: Path, overrides: list[str], runs: int = 1
) -> tuple[subprocess.Popen, float, Path]:
    from mlflow import MlflowClient

    root.mkdir(parents=True, exist_ok=True)
    # The store exists before the run starts, as it does for a sweep's trials (its creation is once).
    MlflowClient(f"sqlite:///{root}/mlflow.db").search_experiments()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tree), "ABLATE_CACHE": str(cache)}
    args = [*RUN, *overrides, f"tracking.uri=sqlite:///{root}/mlflow.db"]
    args += [f"output_dir={root}/run"] if runs == 1 else []  # several: each its own (child)
    t0 = time.time()
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        str(runs),
        str(root / "timing.json"),
        str(t0),
        *args,
    ]
    with open(root / "log.txt", "w") as log:  # the child keeps its own handle
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc, t0, root


def split(root: Path, exit_time: float) -> dict[str, float]:
    t = json.loads((root / "timing.json").read_text())
    marks = t["marks"]
    total = exit_time - t["t0"]
    final_eval = t["evals"][-1]
    phases = {
        "total": total,
        "start": marks["first_step"] - t["t0"],
        "steps": sum(t["steps"]),
        "generation": sum(t["generation"]),
        "evaluation": sum(t["evals"]),
        "end": exit_time - marks["last_step"] - final_eval,
    }
    phases["training"] = phases["steps"] - phases["generation"]
    phases["between"] = total - phases["start"] - phases["steps"] - phases["evaluation"] - phases["end"]
    phases["n_steps"], phases["n_evals"] = len(t["steps"]), len(t["evals"])
    return phases


class FlopCount:
    """FLOPs of the policy's forward (and backward) at given shapes, counted once per shape."""

    def __init__(self, checkpoint: str):
        import torch
        from torch.utils.flop_counter import (
            FlopCounterMode,
            register_flop_formula,
            sdpa_backward_flop,
            sdpa_flop,
        )

        from ablate.models import PretrainedModelConfig, load_model

        aten = torch.ops.aten
        # The CPU kernels of scaled-dot-product attention have no formula in torch's table; they
        # do the same arithmetic as the CUDA flash kernels that have one.
        cpu_kernels = (
            (aten._scaled_dot_product_flash_attention_for_cpu, sdpa_flop),
            (aten._scaled_dot_product_flash_attention_for_cpu_backward, sdpa_backward_flop),
        )
        for op, formula in cpu_kernels:
            with contextlib.suppress(RuntimeError):  # a newer torch has it
                register_flop_formula(op, get_raw=True)(formula)
        self.torch, self.mode = torch, FlopCounterMode
        from trl.trainer.utils import add_fused_lm_head

        self.model, _ = load_model(PretrainedModelConfig(name_or_path=checkpoint, dtype="float32"))
        add_fused_lm_head(self.model, temperature=1.0, outputs=("log_probs", "entropy"))  # as RLOOTrainer
        self.cache: dict[tuple, int] = {}

    def count(self, fn) -> int:
        with self.mode(display=False) as counter:
            fn()
        return counter.get_total_flops()

    def ids(self, batch: int, length: int):
        return self.torch.randint(3, 60, (batch, length))

    def forward(self, batch: int, length: int, keep: int, backward: bool) -> int:
        key = ("fwd", batch, length, keep, backward)
        if key not in self.cache:
            ids = self.ids(batch, length)

            def run():
                with self.torch.set_grad_enabled(backward):
                    out = self.model(input_ids=ids, labels=ids, fused_lm_head=True)
                    logps = out.log_probs[:, -keep:]
                    if backward:
                        logps.sum().backward()

            self.cache[key] = self.count(run)
        return self.cache[key]

    def decode(self, batch: int, cached: int) -> int:
        """One generated token of ``batch`` rows with ``cached`` positions in the KV cache."""
        from transformers import DynamicCache

        key = ("dec", batch, cached)
        if key not in self.cache:
            with self.torch.no_grad():
                cache = DynamicCache(config=self.model.config)
                self.model(input_ids=self.ids(batch, cached), past_key_values=cache, use_cache=True)
                step = self.ids(batch, 1)
                self.cache[key] = self.count(lambda: self.model(input_ids=step, past_key_values=cache))
        return self.cache[key]

    def generation(self, batch: int, prompt: int, new: int) -> int:
        prefill = self.forward(batch, prompt, 1, backward=False)
        # A decode step's FLOPs are affine in the cache length (attention grows, the rest does not).
        first, slope = self.decode(batch, prompt), self.decode(batch, prompt + 1) - self.decode(batch, prompt)
        steps = new - 1
        return prefill + steps * first + slope * steps * (steps - 1) // 2


def flops(root: Path, counter: FlopCount) -> dict[str, float]:
    t = json.loads((root / "timing.json").read_text())
    gen = sum(counter.generation(b, p, n) for b, p, n in t["gen_shapes"])
    train = sum(counter.forward(b, s, k, backward=g) for b, s, k, g in t["fwd_shapes"])
    return {"generation": gen, "training": train}


def matmul_rate(size: int = 1024, repeats: int = 21) -> float:
    """FLOP/s of a plain float32 matmul on one thread: the best of ``repeats``, since a bound is the
    most the machine can do (a median moves with whatever else shares the host)."""
    import torch

    torch.set_num_threads(1)
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / min(times)


def report(name: str, splits: list[dict]) -> None:
    """Medians over runs of each phase, and of the steps' bound and ratio."""
    med = {k: statistics.median(s[k] for s in splits) for k in splits[0]}
    total, steps, evals = med["total"], med["n_steps"], med["n_evals"]
    print(f"\n{name}: {len(splits)} run(s), median wall time {total:.1f} s", end=" ")
    print(f"({steps:.0f} steps, {evals:.0f} evaluations)")
    for key in ("start", "steps", "generation", "training", "evaluation", "end", "between"):
        indent = "    " if key in ("generation", "training") else "  "
        print(f"{indent}{key:12s} {med[key]:7.1f} s  {100 * med[key] / total:5.1f}%")
    fixed, step, evaluation = med["start"] + med["end"], med["steps"] / steps, med["evaluation"] / evals
    print(f"  fixed cost (start + end) {fixed:.1f} s; a step {step:.3f} s; an evaluation {evaluation:.2f} s")
    print(f"  FLOPs per step: generation {med['gen_flops'] / steps / 1e9:.2f} G, "
          f"training {med['train_flops'] / steps / 1e9:.2f} G")  # fmt: skip
    for key in ("generation", "training", "steps"):
        bound = med[f"{key}_bound"]
        ratio = med[key + "_ratio"]
        print(f"  {key:10s} compute bound {bound:6.1f} s, measured {med[key]:6.1f} s: {ratio:.2f}x")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(Path(sys.argv[3]), float(sys.argv[4]), sys.argv[5:], int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", default=None, help="a git ref run side by side with the working tree")
    parser.add_argument("--in-process", type=int, default=1, metavar="N",
                        help="N runs one after another in one process; each one's fixed cost")  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="ablate train overrides for both")
    args = parser.parse_args()
    if args.in_process > 1:
        in_process(args.in_process, args.repeats, args.overrides)
        return
    rate = matmul_rate()
    print(f"matmul rate, 1 thread: {rate / 1e9:.1f} GFLOP/s")
    with tempfile.TemporaryDirectory() as tmp:
        cache = shared_cache(Path(tmp))
        trees = {"this tree": REPO}
        if args.baseline:
            base = Path(tmp) / "baseline"
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(base), args.baseline],
                           check=True, capture_output=True)  # fmt: skip
            trees = {f"baseline {args.baseline}": base, **trees}
        results: dict[str, list[tuple[Path, float]]] = {name: [] for name in trees}
        try:
            for i in range(args.repeats):
                procs = [(name, *start_run(tree, Path(tmp) / f"{i}-{j}", cache, args.overrides))
                         for j, (name, tree) in enumerate(trees.items())]  # fmt: skip
                ended = wait_all(procs)
                for name, _, _, root in procs:
                    results[name].append((root, ended[name]))
                    print(f"repeat {i} {name}: {split(root, ended[name])['total']:.1f} s", flush=True)
                if args.baseline:
                    print(f"repeat {i} results: {compare_results(*(root for _, _, _, root in procs))}")
            counter = FlopCount(checkpoint(results[next(iter(results))][0][0]))
            for name, runs in results.items():
                splits = []
                for root, end in runs:
                    phases = split(root, end)
                    counted = flops(root, counter)
                    phases["gen_flops"], phases["train_flops"] = counted["generation"], counted["training"]
                    phases["generation_bound"] = counted["generation"] / rate
                    phases["training_bound"] = counted["training"] / rate
                    phases["steps_bound"] = phases["generation_bound"] + phases["training_bound"]
                    for key in ("generation", "training", "steps"):
                        phases[f"{key}_ratio"] = phases[key] / phases[f"{key}_bound"]
                    splits.append(phases)
                report(name, splits)
        finally:
            if args.baseline:
                subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], check=False
                )


def in_process(runs: int, repeats: int, overrides: list[str]) -> None:
    """Medians over repeats of each run's fixed cost, ``runs`` runs to a process (this tree only)."""
    costs = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = shared_cache(Path(tmp))
        for i in range(repeats):
            proc, _, root = start_run(REPO, Path(tmp) / str(i), cache, overrides, runs)
            wait_all([("this tree", proc, None, root)])
            costs.append(fixed_costs(root))
            print(f"repeat {i}: " + ", ".join(f"run {k + 1} {a:.1f} + {b:.1f} s" for k, (a, b) in
                                           enumerate(costs[-1])), flush=True)  # fmt: skip
    print(f"\n{runs} runs in one process (as sweep.trials_per_worker={runs}), median of {repeats}:")
    for k in range(runs):
        start, end = (statistics.median(c[k][j] for c in costs) for j in (0, 1))
        since = "process start" if k == 0 else "the previous run's return"
        print(f"  run {k + 1}: start {start:5.1f} s (from {since}), end {end:5.1f} s, "
              f"fixed {start + end:5.1f} s")  # fmt: skip


def checkpoint(root: Path) -> str:
    """The policy checkpoint the run trained, from its resolved config."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    model = instantiate(OmegaConf.load(root / "run" / "config.yaml").model, _convert_="all")
    return str(model.checkpoint())


def compare_results(baseline: Path, ours: Path) -> str:
    """Whether two runs logged the same numbers: every metric's whole history in MLflow (training,
    evaluations, EOS diagnostics; wall-clock ones aside), the final predictions and metrics files.
    Values are compared where both trees logged them; a column, key or metric only one logged is
    named apart, and a differing metric carries its largest relative difference."""
    import pandas as pd

    differ, extra = [], []
    a_pred, b_pred = (pd.read_json(r / "run" / "predictions.jsonl", lines=True) for r in (baseline, ours))
    shared = [c for c in a_pred.columns if c in b_pred.columns]
    extra += [f"predictions column {c}" for c in a_pred.columns.symmetric_difference(b_pred.columns)]
    if not a_pred[shared].equals(b_pred[shared]):
        changed = [c for c in shared if not a_pred[c].equals(b_pred[c])]
        differ.append(f"predictions.jsonl ({', '.join(changed)})")
    a_met, b_met = (json.loads((r / "run" / "metrics.json").read_text()) for r in (baseline, ours))
    extra += [f"metrics.json key {k}" for k in sorted(a_met.keys() ^ b_met.keys())]
    differ += [f"metrics.json {k}" for k in sorted(a_met.keys() & b_met.keys()) if a_met[k] != b_met[k]]
    a, b = logged(baseline), logged(ours)
    extra += [f"metric {k}" for k in sorted(a.keys() ^ b.keys())]
    differ += [f"{k} (max rel. diff {largest_difference(a[k], b[k]):.1e})"
               for k in sorted(a.keys() & b.keys()) if a[k] != b[k]]  # fmt: skip
    same = f"the same {len(a.keys() & b.keys())} metrics" if not differ else "differ in " + ", ".join(differ)
    return same + (f"; logged by one tree only: {', '.join(extra)}" if extra else "")


def largest_difference(a: list[tuple[int, float]], b: list[tuple[int, float]]) -> float:
    """The largest relative difference of two histories at the steps both have (inf where none match)."""
    ours = dict(b)
    pairs = [(x, ours[step]) for step, x in a if step in ours]
    if not pairs:
        return float("inf")
    return max(abs(x - y) / max(abs(x), abs(y), 1e-12) for x, y in pairs)


def logged(root: Path) -> dict[str, list[tuple[int, float]]]:
    """The run's metric histories in its MLflow store, but for those that time the run: each a sorted
    list of distinct (step, value) pairs, since MLflow stores a value logged twice at one step once
    when both fall in the same millisecond (TRL logs ``epoch`` with the last step and again at the end)."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    experiments = [e.experiment_id for e in client.search_experiments()]
    (run,) = [r for r in client.search_runs(experiments) if r.info.run_name != "study"]
    clock = ("time", "per_second", "runtime")
    return {
        key: sorted({(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)})
        for key in run.data.metrics
        if not any(c in key for c in clock)
    }


def wait_all(procs: list) -> dict[str, float]:
    """Wait for every run; each one's exit time as it happens (for the end phase)."""
    ended: dict[str, float] = {}
    while len(ended) < len(procs):
        for name, proc, _, root in procs:
            if name not in ended and proc.poll() is not None:
                ended[name] = time.time()
                if proc.returncode:
                    sys.exit(f"{name}: run failed, see\n{(root / 'log.txt').read_text()[-3000:]}")
        time.sleep(0.02)
    return ended


if __name__ == "__main__":
    main()
