"""``ablate sweep``: create or resume a study, run its trials in worker processes, print its table.

The study lives in an Optuna storage (SQLite beside the MLflow store by default, or any URL),
so the same command on several machines pointed at one PostgreSQL runs one study together,
and running it again resumes it. A grid's cells are queued once in the storage; a worker
process takes one queued trial, trains it and exits, so cells are never run twice and never
lost: a trial whose worker died is failed (by its missing heartbeat, or at once when it was a
worker of this launcher) and queued again.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from hydra.utils import instantiate
from mlflow import MlflowClient
from mlflow.entities import Param
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from ablate.config import compose
from ablate.connect import redact
from ablate.sweep.results import format_table, results_table
from ablate.sweep.storage import (
    RetryAndMarkRun,
    default_storage_url,
    get_storage,
    pruner_of,
    retrying,
    sampler_of,
)
from ablate.sweep.study import cell_key, fingerprint, grid_cells, override
from ablate.sweep.trial import DONE, LIVE
from ablate.tracking import TrackingConfig, ensure_experiment

log = logging.getLogger(__name__)
SPEC_ATTR = "ablate.spec"
PARENT_ATTR = "mlflow_parent_run_id"


def check_configs(cfg: DictConfig, cells: list[dict[str, Any]]) -> DictConfig:
    """Compose every grid cell's train config now, so a bad override fails before any training."""
    base = compose(list(cfg.overrides))
    for cell in cells:
        try:
            compose([*cfg.overrides, *(override(k, v) for k, v in cell.items())])
        except Exception as err:
            raise ValueError(f"study {cfg.sweep.name}: grid cell {cell}: {err}") from None
    return base


def open_study(cfg: DictConfig, storage: Any, cells: list[dict[str, Any]]) -> tuple[optuna.Study, bool]:
    """Create the study, or load it and check it is the same study (same overrides, grid, objectives)."""
    name = cfg.sweep.name
    directions = [o.direction for o in cfg.objectives]
    sampler, pruner = sampler_of(cfg, cells), pruner_of(cfg)
    try:
        study = optuna.create_study(
            study_name=name, storage=storage, directions=directions, sampler=sampler, pruner=pruner
        )
        study.set_user_attr(SPEC_ATTR, fingerprint(cfg))
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    stored = stored_attr(study, SPEC_ATTR, wait_s=10)  # its creator may not have written it yet
    mine = fingerprint(cfg)
    if stored is not None and stored != mine:
        differ = ", ".join(k for k in mine if mine[k] != stored.get(k))
        raise ValueError(
            f"study {name!r} already exists in this storage with other {differ}: stored {stored}, "
            f"given {mine}. Run it with the same settings to resume it, "
            "or name a new study with sweep.name=..."
        )
    return study, False


def stored_attr(study: optuna.Study, key: str, wait_s: float) -> Any:
    """A study user attribute, waiting up to ``wait_s`` for another machine's launcher to write it."""
    deadline = time.monotonic() + wait_s
    while True:
        value = study.user_attrs.get(key)  # read from the storage on every access
        if value is not None or time.monotonic() >= deadline:
            return value
        time.sleep(0.2)


def parent_run(
    study: optuna.Study, cfg: DictConfig, tracking: TrackingConfig, storage_url: str, created: bool
) -> str:
    """The study's MLflow run (one per study; reopened on resume, shared across machines)."""
    client = MlflowClient(tracking.uri)
    # The launcher that created the study creates its run; others wait for it (unless it died).
    run_id = None if created else stored_attr(study, PARENT_ATTR, wait_s=30)
    if run_id:
        client.update_run(run_id, status="RUNNING")
        return run_id
    experiment_id = ensure_experiment(tracking)
    name = cfg.sweep.name
    tags = {
        "ablate.study": name,
        "ablate.role": "study",
        "optuna.study": name,
        "optuna.storage": redact(storage_url),
        "optuna.sampler": type(study.sampler).__name__,
        "mlflow.note.content": cfg.description,
    }
    run_id = client.create_run(experiment_id, run_name=f"study {name}", tags=tags).info.run_id
    params = {
        "study.name": name,
        "study.storage": redact(storage_url),
        "study.sampler": type(study.sampler).__name__,
        "study.pruner": type(study.pruner).__name__,
        "study.objectives": ",".join(f"{o.metric}:{o.direction}" for o in cfg.objectives),
        "study.n_trials": str(len(grid_cells(cfg)) if cfg.grid else cfg.n_trials),
        "study.overrides": json.dumps(redact(list(cfg.overrides))),
        "study.grid": json.dumps(OmegaConf.to_container(cfg.grid)),
        "study.space": json.dumps(OmegaConf.to_container(cfg.space)),
    }
    client.log_batch(run_id, params=[Param(k, v[:6000]) for k, v in params.items()])
    study.set_user_attr(PARENT_ATTR, run_id)
    return run_id


def queue_missing_cells(study: optuna.Study, cells: list[dict[str, Any]]) -> int:
    """Queue every cell without a done or live trial (a first run, or cells that failed before)."""
    held = {
        cell_key(t.params or t.system_attrs.get("fixed_params", {}))
        for t in study.get_trials(deepcopy=False, states=(*DONE, *LIVE))
    }
    missing = [c for c in cells if cell_key(c) not in held]
    for cell in missing:
        study.enqueue_trial(cell)
    return len(missing)


def worker_env(slot: int, workers: int, gpus: list[int] | None) -> dict[str, str]:
    """One GPU per trial process when there are GPUs; else CPU threads shared between the workers."""
    env = dict(os.environ)
    if gpus is None:
        import torch

        gpus = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = str(gpus[slot % len(gpus)])
    elif "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
    return env


@dataclass
class Worker:
    proc: subprocess.Popen
    log_path: Path
    ident: str = field(init=False)

    def __post_init__(self) -> None:
        self.ident = f"{socket.gethostname()}:{self.proc.pid}"


class Launcher:
    """Keeps ``sweep.workers`` trial processes busy until the study is done."""

    def __init__(self, cfg: DictConfig, study: optuna.Study, spec: dict[str, Any], on_stale: RetryAndMarkRun):
        self.cfg, self.study, self.spec, self.on_stale = cfg, study, spec, on_stale
        self.total = len(grid_cells(cfg)) if cfg.grid else cfg.n_trials
        self.workers: dict[int, Worker] = {}
        self.started = 0
        self.crashes = 0  # workers in a row that died; a broken environment must not respawn forever
        self.logs = Path(spec["dir"]) / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.gpus = None if cfg.sweep.gpus is None else list(cfg.sweep.gpus)

    def spawn(self, slot: int) -> None:
        self.started += 1
        path = self.logs / f"worker{slot}_{self.started:04d}.log"
        with open(path, "w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ablate.sweep.trial"],
                stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, text=True,
                env=worker_env(slot, self.cfg.sweep.workers, self.gpus),
            )  # fmt: skip
        proc.stdin.write(json.dumps(self.spec))  # on stdin: storage URLs may hold passwords
        proc.stdin.close()
        self.workers[slot] = Worker(proc, path)

    def reap(self, trials: list[FrozenTrial]) -> bool:
        """Forget exited workers; a worker that died fails its running trial, which is queued again.

        Returns whether the storage changed (a trial was failed and queued again).
        """
        changed = False
        for slot, worker in list(self.workers.items()):
            code = worker.proc.poll()
            if code is None:
                continue
            del self.workers[slot]
            if code == 0:
                self.crashes = 0
                continue
            self.crashes += 1
            tail = worker.log_path.read_text(errors="replace")[-1500:]
            tqdm.write(f"worker {worker.ident} exited with code {code} (log {worker.log_path}):\n{tail}")
            for trial in trials:
                if trial.state == TrialState.RUNNING and trial.user_attrs.get("worker") == worker.ident:
                    try:
                        retrying(lambda t=trial: self.study.tell(t.number, state=TrialState.FAIL))
                    except Exception:  # failed meanwhile by a heartbeat check elsewhere, which retried it
                        continue
                    retrying(lambda t=trial: self.on_stale(self.study, t))
                    changed = True
            if self.crashes >= 3 * self.cfg.sweep.workers:
                raise RuntimeError(f"{self.crashes} workers in a row died; see {worker.log_path}")
        return changed

    def pending(self, trials: list[FrozenTrial]) -> int:
        """Trials still to start: queued ones, and for a search the ones not yet asked for."""
        waiting = sum(t.state == TrialState.WAITING for t in trials)
        if self.cfg.grid:
            return waiting
        counted = sum(t.state in (*DONE, *LIVE) for t in trials)
        return waiting + max(0, self.total - counted)

    def done(self, trials: list[FrozenTrial]) -> bool:
        if complete(self.cfg, trials):
            return True
        failed = sum(t.state == TrialState.FAIL for t in trials)
        if not self.cfg.grid and failed >= self.total:
            return True  # a search whose every trial fails would never end
        busy = any(t.state in LIVE for t in trials) or self.workers
        return not busy and self.pending(trials) == 0

    def unclaimed(self, trials: list[FrozenTrial]) -> int:
        claimed = {t.user_attrs.get("worker") for t in trials if t.state == TrialState.RUNNING}
        return sum(w.ident not in claimed for w in self.workers.values())

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``, waking as soon as a worker exits (its slot is refilled at once)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and all(w.proc.poll() is None for w in self.workers.values()):
            time.sleep(0.05)

    def run(self) -> None:
        trials = self.study.get_trials(deepcopy=False)
        seen = {t.number for t in trials if t.state.is_finished()}
        initial = min(sum(t.state in DONE for t in trials), self.total)
        bar = tqdm(total=self.total, initial=initial, desc=self.cfg.sweep.name, unit="trial",
                   disable=not self.cfg.sweep.progress, file=sys.stderr)  # fmt: skip
        shown: dict[str, int] = {}
        stale_checked = -math.inf
        try:
            while True:
                if time.monotonic() - stale_checked >= self.cfg.sweep.heartbeat_s:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                        retrying(
                            lambda: optuna.storages.fail_stale_trials(self.study)
                        )  # dead workers anywhere
                    stale_checked = time.monotonic()
                trials = retrying(lambda: self.study.get_trials(deepcopy=False))
                if self.reap(trials):
                    trials = retrying(lambda: self.study.get_trials(deepcopy=False))
                for trial in trials:
                    if trial.state.is_finished() and trial.number not in seen:
                        seen.add(trial.number)
                        bar.update(trial.state in DONE)
                        tqdm.write(describe(trial))
                counts = {
                    "running": sum(t.state == TrialState.RUNNING for t in trials),
                    "failed": sum(t.state == TrialState.FAIL for t in trials),
                }
                if counts != shown:
                    bar.set_postfix(counts)
                    shown = counts
                if self.done(trials):
                    break
                free = [s for s in range(self.cfg.sweep.workers) if s not in self.workers]
                for slot in free[: max(0, self.pending(trials) - self.unclaimed(trials))]:
                    self.spawn(slot)
                self.wait(self.cfg.sweep.poll_s)
        except BaseException:
            # Ctrl-C (or an error here): workers end their trials as FAIL / KILLED and exit;
            # running the command again queues those cells again.
            for worker in self.workers.values():
                worker.proc.send_signal(signal.SIGINT)
            for worker in self.workers.values():
                try:
                    worker.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    worker.proc.kill()
            raise
        finally:
            bar.close()


def describe(trial: FrozenTrial) -> str:
    params = " ".join(f"{k}={v}" for k, v in trial.params.items())
    line = f"trial {trial.number} {trial.state.name:8s} {params}"
    if trial.state == TrialState.COMPLETE:
        metrics = trial.user_attrs.get("metrics", {})
        line += "  " + " ".join(f"{k}={metrics[k]:.2f}" for k in ("acc", "h_acc", "length") if k in metrics)
    elif "error" in trial.user_attrs:
        line += f"  {trial.user_attrs['error'][:300]}"
    elif "duplicate_of" in trial.user_attrs:
        line += f"  (cell already held by trial {trial.user_attrs['duplicate_of']})"
    return line


def browse_hint(tracking: TrackingConfig, experiment_id: str, run_id: str, storage_url: str, study_id: int,
                study_name: str) -> str:  # fmt: skip
    if tracking.uri.startswith(("http://", "https://")):
        address = redact(tracking.uri.rstrip("/"))
        mlflow_line = f"MLflow UI: {address}/#/experiments/{experiment_id}/runs/{run_id}"
    else:
        mlflow_line = (
            f"MLflow UI: mlflow ui --backend-store-uri {tracking.uri}  ->  "
            f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}"
        )
    dashboard = f"ablate dashboard study={study_name}"
    if storage_url != default_storage_url(tracking.uri):
        dashboard += f" sweep.storage='{redact(storage_url)}'"
    return f"{mlflow_line}\nOptuna dashboard: {dashboard}  ->  http://127.0.0.1:8080/dashboard/studies/{study_id}"


def storage_url_of(cfg: DictConfig, tracking: TrackingConfig | None = None) -> str:
    """``sweep.storage``, else ``optuna.db`` beside the study's MLflow store."""
    if cfg.sweep.storage:
        return cfg.sweep.storage
    tracking = tracking or instantiate(compose(list(cfg.overrides)).tracking)
    return default_storage_url(tracking.uri)


def run_sweep(cfg: DictConfig) -> int:
    """Run (or resume) the study; return 0 when every cell / trial completed, else 1."""
    cells = grid_cells(cfg) if cfg.grid else []
    base = check_configs(cfg, cells)
    tracking: TrackingConfig = instantiate(base.tracking)
    experiment_id = ensure_experiment(tracking)  # fails fast, naming the URI, if a server is down
    storage_url = storage_url_of(cfg, tracking)
    name = cfg.sweep.name
    sweep_dir = Path(cfg.sweep.dir or f"runs/sweeps/{name}")
    on_stale = RetryAndMarkRun(cfg.sweep.max_retry, tracking.uri)
    storage = get_storage(storage_url, cfg.sweep.heartbeat_s, cfg.sweep.grace_s, on_stale)
    study, created = open_study(cfg, storage, cells)
    queued = queue_missing_cells(study, cells) if cfg.grid else 0
    run_id = parent_run(study, cfg, tracking, storage_url, created)
    print(
        f"study {name!r} ({'new' if created else 'resumed'}) in {redact(storage_url)}: "
        f"{len(cells) or cfg.n_trials} trials, {queued} queued now, {cfg.sweep.workers} worker(s)"
    )
    spec = {
        "study": OmegaConf.to_container(cfg),
        "storage": storage_url,
        "tracking_uri": tracking.uri,
        "parent_run_id": run_id,
        "dir": str(sweep_dir),
    }
    client = MlflowClient(tracking.uri)
    try:
        Launcher(cfg, study, spec, on_stale).run()
    except BaseException as err:
        client.set_tag(run_id, "error", f"{type(err).__name__}: {err}"[:5000])
        client.set_terminated(run_id, status="KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise
    objective = cfg.objectives[0].metric
    table = results_table(study, grid=bool(cfg.grid), objective=objective)
    text = format_table(table)
    heading = f"study {name}: {cfg.description}".rstrip(": ")
    print(f"\n{heading}\n{text}\n")
    if not table.empty:
        client.log_text(run_id, table.to_csv(index=False), "results.csv")
        client.log_text(run_id, f"{heading}\n{text}\n", "results.txt")
    trials = study.get_trials(deepcopy=False)
    finished = complete(cfg, trials)
    client.set_terminated(run_id, status="FINISHED" if finished else "FAILED")
    study_id = storage.get_study_id_from_name(name)
    print(browse_hint(tracking, experiment_id, run_id, storage_url, study_id, name))
    if not finished:
        failed = [
            describe(t) for t in trials if t.state == TrialState.FAIL and "duplicate_of" not in t.user_attrs
        ]
        print("\nnot every trial completed; failed trials (run the same command again to retry them):\n"
              + "\n".join(failed), file=sys.stderr)  # fmt: skip
        return 1
    return 0


def complete(cfg: DictConfig, trials: list[FrozenTrial]) -> bool:
    """Every grid cell has a COMPLETE or PRUNED trial; a search has ``n_trials`` of them."""
    if cfg.grid:
        held = {cell_key(t.params) for t in trials if t.state in DONE}
        return {cell_key(c) for c in grid_cells(cfg)} <= held
    return sum(t.state in DONE for t in trials) >= cfg.n_trials
