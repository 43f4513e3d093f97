"""The ``ablate`` command: ``ablate train [hydra overrides]``, ``ablate evaluate --predictions F``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import ablate.config  # noqa: F401 (registers train_schema for every compose of conf/)

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def train(argv: list[str]) -> None:
    """train one run from the Hydra config (conf/config.yaml); args are Hydra overrides"""
    import hydra
    from omegaconf import DictConfig

    from ablate.connect import check_reachable

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
    def _main(cfg: DictConfig) -> float:
        check_reachable(cfg.tracking.uri, cfg.tracking.connect_timeout_s)  # before the heavy imports
        from ablate.train import run

        return run(cfg)["h_acc"]

    sys.argv = ["ablate train", *argv]  # Hydra reads its overrides from sys.argv
    _main()


def evaluate(argv: list[str]) -> None:
    """recompute the paper's metrics from a predictions table (--predictions FILE)"""
    from ablate.evaluate import main

    main(argv)


COMMANDS: dict[str, Callable[[list[str]], None]] = {"train": train, "evaluate": evaluate}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        COMMANDS[argv[0]](argv[1:])
        return
    usage = "usage: ablate COMMAND [ARGS]\ncommands:\n" + "\n".join(
        f"  {name:10s}{func.__doc__}" for name, func in COMMANDS.items()
    )
    if argv and argv[0] in ("-h", "--help"):
        print(usage)
        return
    problem = f"unknown command {argv[0]!r}" if argv else "no command given"
    sys.exit(f"ablate: {problem}; valid choices are {', '.join(COMMANDS)}\n{usage}")
