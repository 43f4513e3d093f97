"""Several processes per run: ``ablate train launch.processes=N`` re-runs itself under ``accelerate launch``.

The command the user typed becomes N ranks of the same command (same overrides, one run directory),
started by accelerate with one of TRL's shipped configs (``launch.config=ddp|zero1|zero2|zero3|fsdp1|
fsdp2``) or the path of one's own. On a machine without CUDA the ranks use torch.distributed's gloo
backend on the CPU (``ACCELERATE_USE_CPU``), which is how the tests run it. Inside the ranks,
``rank()`` and ``world_size()`` say who is who: only rank 0 writes the run directory and talks to
MLflow; evaluation is split across the ranks and merged (``shard``, ``merge``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# launch.config name -> the file TRL ships in trl/accelerate_configs/
CONFIGS = {
    "ddp": "multi_gpu",
    "zero1": "zero1",
    "zero2": "zero2",
    "zero3": "zero3",
    "fsdp1": "fsdp1",
    "fsdp2": "fsdp2",
}
CPU_CONFIGS = ("ddp",)  # DeepSpeed and FSDP need CUDA devices
LAUNCHED = "ABLATE_LAUNCHED"  # set in the ranks' environment: they must not launch again


@dataclass
class LaunchConfig:
    """How many processes one run has and how accelerate starts them."""

    processes: int = 1  # ranks of this run (>1: re-run under `accelerate launch`, one device each on GPUs)
    config: str = "ddp"  # ddp | zero1 | zero2 | zero3 | fsdp1 | fsdp2 (TRL's shipped configs) or a path
    main_port: int | None = None  # rendezvous port (None: a free one, so runs on one machine never collide)


def rank() -> int:
    """This process's rank in its run (0 when the run has one process)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return rank() == 0


def config_file(name: str) -> Path:
    """The accelerate config file of ``launch.config``: a TRL name or a path."""
    if name in CONFIGS:
        import trl

        return Path(trl.__file__).parent / "accelerate_configs" / f"{CONFIGS[name]}.yaml"
    path = Path(name)
    if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
        return path
    raise ValueError(
        f"launch.config={name!r}: valid choices are {', '.join(CONFIGS)}, or an accelerate config file's path"
    )


def check(cfg: Any, cuda: bool) -> None:
    """A launch a machine can run: processes >= 1, a known config, DeepSpeed/FSDP only with CUDA."""
    if cfg.processes < 1:
        raise ValueError(f"launch.processes={cfg.processes}: needs at least 1")
    config_file(cfg.config)
    if not cuda and cfg.processes > 1 and cfg.config not in CPU_CONFIGS:
        raise ValueError(
            f"launch.config={cfg.config}: DeepSpeed and FSDP need CUDA devices; on a CPU use ddp"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launcher(launch: Any, cuda: bool) -> list[str]:
    """``python -m accelerate.commands.launch ARGS``: ``launch.processes`` ranks on this machine."""
    port = launch.main_port or free_port()
    args = ["--config_file", str(config_file(launch.config)), "--num_processes", str(launch.processes)]
    args += ["--num_machines", "1", "--main_process_port", str(port)]
    if not cuda:
        args += ["--mixed_precision", "no"]
    return [sys.executable, "-m", "accelerate.commands.launch", *args]


def command(cfg: Any, overrides: list[str], output_dir: str, cuda: bool) -> list[str]:
    """``accelerate launch ... -m ablate train OVERRIDES output_dir=DIR``: the ranks share one directory."""
    kept = [o for o in overrides if not o.lstrip("+").startswith("output_dir=")]
    return [*launcher(cfg.launch, cuda), "-m", "ablate", "train", *kept, f"output_dir={output_dir}"]


def rank_env(cuda: bool) -> dict[str, str]:
    """The ranks' environment: marked as launched (they must not launch again), gloo on a CPU."""
    env = os.environ | {LAUNCHED: "1"}
    if not cuda:
        env["ACCELERATE_USE_CPU"] = "true"
    return env


def run_ranks(cmd: list[str], env: dict[str, str]) -> int:
    """Run the launcher ``cmd``; its exit code. It gets SIGTERM if this process dies (``guarded``), and if
    this one is interrupted (Ctrl-C, an error) it is asked to stop its ranks, waited for, then killed:
    a killed ``ablate train`` or sweep worker leaves no ranks behind."""
    proc = subprocess.Popen([sys.executable, "-m", "ablate.launch", *cmd], env=env)
    try:
        return proc.wait()
    except BaseException:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise


def guarded(cmd: list[str]) -> None:
    """Become ``cmd``, set to receive SIGTERM when the parent dies (Linux's PR_SET_PDEATHSIG, which
    survives exec; a preexec_fn would not be safe in a process with threads, like a sweep worker)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    if os.getppid() == 1:
        sys.exit("the process that started the ranks is gone")  # it died before the signal was set
    os.execv(cmd[0], cmd)


def build_model(cfg: Any) -> None:
    """A model built here (tiny, a warm start) is built once, before the ranks start."""
    from hydra.utils import instantiate

    model = instantiate(cfg.model, _convert_="all")
    if hasattr(model, "checkpoint"):
        model.checkpoint()


def relaunch(cfg: Any, overrides: list[str]) -> int:
    """Run this ``ablate train`` as ``launch.processes`` ranks in one directory; the launcher's exit code."""
    import torch

    cuda = torch.cuda.is_available()
    check(cfg.launch, cuda)
    build_model(cfg)
    output_dir = str(Path(cfg.output_dir).resolve())
    print(f"ablate train: {cfg.launch.processes} processes ({cfg.launch.config}) under accelerate launch")
    return run_ranks(command(cfg, overrides, output_dir, cuda), rank_env(cuda))


class RankStopped(RuntimeError):
    """The launcher stopped this rank, because another rank of the run failed."""


def peer_lost(err: BaseException | None) -> bool:
    """Whether ``err``, or an error it was raised from, says another rank of the run is gone: the
    launcher stopped this one, or a collective lost its peer (NCCL raises a DistBackendError; gloo a
    plain RuntimeError from its transport: "Connection closed by peer", "Read error ... Connection
    reset by peer")."""
    import torch.distributed as dist

    seen: set[int] = set()
    while err is not None and id(err) not in seen:  # a store wraps it: MLflow's SQL store raises from it
        if isinstance(err, RankStopped | dist.DistError) or "gloo/transport/" in str(err):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


def fail_on_sigterm() -> None:
    """Turn the launcher's SIGTERM into an exception, so this rank's run ends FAILED with a reason
    (rank 0's MLflow run would otherwise stay RUNNING when another rank dies)."""

    def stop(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the run's own ending must not be cut short
        raise RankStopped("stopped by the launcher (SIGTERM): another rank of this run failed")

    signal.signal(signal.SIGTERM, stop)


def launched() -> bool:
    """True inside a rank that ``relaunch`` (or any torch.distributed launcher) started."""
    return LAUNCHED in os.environ or "LOCAL_RANK" in os.environ


def shard(table: Any) -> Any:
    """This rank's share of a table: every ``world_size()``-th row from its rank."""
    return table if world_size() == 1 else table.iloc[rank() :: world_size()]


def merge(part: Any) -> list[Any]:
    """Every rank's ``part``, in rank order (all ranks must call it); ``[part]`` with one process."""
    if world_size() == 1:
        return [part]
    import torch.distributed as dist

    parts: list[Any] = [None] * world_size()
    dist.all_gather_object(parts, part)
    return parts


def gathered(part: Any, ids: Any) -> Any:
    """Every rank's rows of the table ``part`` (``shard`` of a table with an ``id`` column), merged in
    the order of ``ids``; rows of one id keep their order (all ranks must call it)."""
    if world_size() == 1:
        return part
    import pandas as pd

    table = pd.concat(merge(part), ignore_index=True)
    position = {q: i for i, q in enumerate(ids)}
    return table.iloc[table["id"].map(position).argsort(kind="stable")].reset_index(drop=True)


if __name__ == "__main__":
    guarded(sys.argv[1:])
