"""vLLM servers a sweep starts for its workers (``rollout=vllm_server rollout.managed=true``).

A server holds one policy's weights (its trial pushes them in before each generation, as TRL does)
and one trainer's weight-transfer group, so each worker process (one trial: ``sweep.trials_per_worker``
must be 1) gets a server of its own: on the last ``rollout.devices`` GPUs of its slot's group, the
trial's ranks on the others, on free HTTP and weight-transfer (NCCL) ports of this machine, so no two
workers collide. It is started, and healthy, before its worker, and stopped when the worker exits
(a crashed trial leaves nothing behind for the next one) or the sweep ends.

>>> slot_gpus(1, gpus=[0, 1, 2, 3, 4, 5, 6, 7], devices=3, server_devices=1)
([4, 5, 6], [7])
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The weight-transfer and prefix-cache endpoints TRL's client needs live behind vLLM's dev mode.
SERVER_ENV = {"VLLM_SERVER_DEV_MODE": "1"}
HOST = "127.0.0.1"  # a managed server serves this machine's workers only
SERVER_OVERRIDES = "server_overrides"  # the worker spec's key: what its trials set to use its server


def slot_gpus(slot: int, gpus: list[int], devices: int, server_devices: int) -> tuple[list[int], list[int]]:
    """The GPUs of worker slot ``slot``: its trial's ``devices`` and its server's ``server_devices``."""
    group = devices + server_devices
    if group > len(gpus):
        served = f" + rollout.devices={server_devices}" if server_devices else ""
        raise ValueError(f"sweep.devices_per_trial={devices}{served}, but only {len(gpus)} GPU(s): {gpus}")
    start = (slot % (len(gpus) // group)) * group
    return gpus[start : start + devices], gpus[start + devices : start + group]


def check_slots(workers: int, gpus: list[int], devices: int, server_devices: int) -> None:
    """Every worker needs GPUs of its own for its server: two workers cannot share one policy's server."""
    slot_gpus(0, gpus, devices, server_devices)
    groups = len(gpus) // (devices + server_devices)
    if workers > groups:
        raise ValueError(
            f"sweep.workers={workers} with rollout.managed=true: each worker needs its own server, and "
            f"{len(gpus)} GPU(s) make {groups} group(s) of {devices} + {server_devices}; "
            f"set sweep.workers<={groups}"
        )


def check_managed(cfg: Any, base: Any, gpus: list[int]) -> bool:
    """Whether the study's vLLM servers are the sweep's to run; refused, in one line, where they cannot be."""
    if not base.rollout.get("managed", False):
        return False
    varied = [k for k in (*cfg.grid, *cfg.space) if k.split(".")[0] in ("model", "rollout")]
    if varied:
        raise ValueError(
            f"study {cfg.sweep.name}: rollout.managed=true serves one model to the whole sweep, so {varied} "
            "cannot vary; run one study per value"
        )
    if cfg.sweep.trials_per_worker != 1:
        raise ValueError(
            f"study {cfg.sweep.name}: rollout.managed=true starts a server per worker process, which takes "
            f"one trial's weight transfers; set sweep.trials_per_worker=1 (not {cfg.sweep.trials_per_worker})"
        )
    check_slots(cfg.sweep.workers, gpus, cfg.sweep.devices_per_trial, base.rollout.devices)
    return True


def free_port(taken: set[int] = frozenset()) -> int:
    """A TCP port nobody listens on now (the OS's choice), and not one of ``taken``."""
    while True:
        with socket.socket() as sock:
            sock.bind(("", 0))
            port = sock.getsockname()[1]
        if port not in taken:
            return port


def server_model(model_cfg: Any) -> str:
    """What the server loads: a hub id or directory, or the checkpoint of a model built here."""
    return getattr(model_cfg, "name_or_path", None) or str(Path(model_cfg.checkpoint()).resolve())


def server_command(rollout: Any, model: str, port: int) -> list[str]:
    """vLLM's server for ``model`` on ``port``, as ``trl vllm-serve`` starts it (TRL's settings)."""
    from trl.scripts.vllm_serve import ScriptArguments, build_command

    args = ScriptArguments(
        model=model, host=HOST, port=port, tensor_parallel_size=rollout.devices,
        gpu_memory_utilization=rollout.gpu_memory_utilization, max_model_len=rollout.max_model_length,
    )  # fmt: skip
    return build_command(args, list(rollout.extra_args))


@dataclass
class Server:
    """One running server: its process, ports, GPUs and log."""

    proc: subprocess.Popen
    port: int
    group_port: int
    gpus: list[int]
    log_path: Path

    def overrides(self) -> list[str]:
        """What a trial of this slot's worker sets to use it (and not start one of its own)."""
        return [
            "rollout.managed=false", "rollout.base_url=null", f"rollout.host={HOST}",
            f"rollout.port={self.port}", f"rollout.group_port={self.group_port}",
        ]  # fmt: skip

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_healthy(self, timeout_s: float) -> None:
        """Return once ``/health`` answers 200; raise, with the log's end, if it dies or takes too long."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.proc.returncode
                raise RuntimeError(f"vLLM server on GPUs {self.gpus} exited ({code}):\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{self.port}/health", timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        waited = f"not healthy after {timeout_s:.0f} s"
        raise TimeoutError(f"vLLM server on GPUs {self.gpus} {waited}:\n{self.tail()}")

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM to the server's process group (vLLM's engine processes too), then SIGKILL."""
        if not self.alive():
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def start_server(command: list[str], port: int, group_port: int, gpus: list[int], log_path: Path) -> Server:
    """Start ``command`` (serving on ``port``) on ``gpus``, in a process group of its own."""
    env = dict(os.environ) | SERVER_ENV | {"CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus))}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    return Server(proc, port, group_port, gpus, log_path)


class Servers:
    """The managed servers of a sweep: one for each worker process, on its slot's GPUs."""

    def __init__(
        self, base: Any, gpus: list[int], devices: int, log_dir: Path,
        command: Callable[[int], list[str]] | None = None,
    ):  # fmt: skip
        """``command(port)``: the server's command line (None: vLLM's, for the study's model)."""
        self.rollout, self.gpus, self.devices, self.log_dir = base.rollout, gpus, devices, log_dir
        if command is None:
            model = server_model(instantiate_model(base.model))
            command = lambda port: server_command(self.rollout, model, port)  # noqa: E731
        self.command = command
        self.running: dict[int, Server] = {}

    def start(self, slot: int, name: str) -> Server:
        """A fresh server for the worker about to start in ``slot``, healthy (log ``<name>.log``)."""
        self.stop(slot)
        taken = {p for s in self.running.values() for p in (s.port, s.group_port)}
        port = free_port(taken)
        group_port = free_port(taken | {port})
        _, gpus = slot_gpus(slot, self.gpus, self.devices, self.rollout.devices)
        server = start_server(self.command(port), port, group_port, gpus, self.log_dir / f"{name}.log")
        self.running[slot] = server
        server.wait_healthy(self.rollout.timeout_s)
        return server

    def stop(self, slot: int | None = None) -> None:
        """Stop the server of ``slot`` (its worker has exited), or every server (None)."""
        for key in [slot] if slot is not None else list(self.running):
            server = self.running.pop(key, None)
            if server is not None:
                server.stop()


def instantiate_model(node: Any) -> Any:
    from hydra.utils import instantiate

    return instantiate(node, _convert_="all")
