"""The worker pool of ``ablate sweep``: trial processes kept busy until the study is done.

Each worker is ``python -m ablate.sweep.trial`` (a fresh process per few trials, so a trial's
memory, GPU included, is returned when it exits). A worker that dies fails its running trial,
which is queued again; a broken environment (every worker dying) stops the pool.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from ablate.names import ATTR_WORKER
from ablate.sweep.results import complete, describe
from ablate.sweep.serve import SERVER_OVERRIDES, Servers, slot_gpus
from ablate.sweep.storage import DONE, LIVE, RetryAndMarkRun, retrying, worker_ident
from ablate.sweep.study import grid_cells


def visible_gpus(gpus: list[int] | None) -> list[int]:
    """``sweep.gpus``, or every GPU this machine shows when it is None."""
    if gpus is not None:
        return list(gpus)
    import torch

    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def worker_env(
    slot: int, workers: int, gpus: list[int] | None, devices: int = 1, server_devices: int = 0
) -> dict[str, str]:
    """``devices`` GPUs per trial process when there are GPUs (whole groups, slots beyond them share
    one again; a managed server's ``server_devices`` end each group); else none, and the CPU
    threads shared between the workers' processes."""
    env = dict(os.environ)
    gpus = visible_gpus(gpus)
    if gpus:
        trial, _ = slot_gpus(slot, gpus, devices, server_devices)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, trial))
    else:
        env["CUDA_VISIBLE_DEVICES"] = ""  # sweep.gpus=[] on a GPU machine: trials on the CPU, as asked
        if "OMP_NUM_THREADS" not in env:
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // (workers * devices)))
    return env


@dataclass
class Worker:
    proc: subprocess.Popen
    log_path: Path
    ident: str = field(init=False)

    def __post_init__(self) -> None:
        self.ident = worker_ident(self.proc.pid)


class WorkerPool:
    """Keeps ``sweep.workers`` trial processes busy until the study is done."""

    def __init__(
        self, cfg: DictConfig, study: optuna.Study, spec: dict[str, Any], on_stale: RetryAndMarkRun,
        servers: Servers | None = None,
    ):  # fmt: skip
        """``servers``: the vLLM servers of ``rollout.managed=true``, one per worker process."""
        self.cfg, self.study, self.spec, self.on_stale, self.servers = cfg, study, spec, on_stale, servers
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
        spec, served = self.spec, 0
        if self.servers is not None:
            server = self.servers.start(slot, f"vllm{slot}_{self.started:04d}")
            spec = spec | {SERVER_OVERRIDES: server.overrides()}
            served = self.servers.rollout.devices
        env = worker_env(slot, self.cfg.sweep.workers, self.gpus, self.cfg.sweep.devices_per_trial, served)
        with open(path, "w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ablate.sweep.trial"],
                stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, text=True, env=env,
            )  # fmt: skip
        proc.stdin.write(json.dumps(spec))  # on stdin: storage URLs may hold passwords
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
            if self.servers is not None:
                self.servers.stop(slot)
            if code == 0:
                self.crashes = 0
                continue
            self.crashes += 1
            tail = worker.log_path.read_text(errors="replace")[-1500:]
            tqdm.write(f"worker {worker.ident} exited with code {code} (log {worker.log_path}):\n{tail}")
            for trial in trials:
                if trial.state == TrialState.RUNNING and trial.user_attrs.get(ATTR_WORKER) == worker.ident:
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
        claimed = {t.user_attrs.get(ATTR_WORKER) for t in trials if t.state == TrialState.RUNNING}
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
            if self.servers is not None:
                self.servers.stop()
