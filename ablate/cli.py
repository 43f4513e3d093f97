"""The ``ablate`` command: ``ablate train [hydra overrides]``, ``ablate evaluate --predictions F``."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from ablate.config import CONF_DIR

# Mistakes a user makes (a bad value, a missing file, a bad data row, a server that is down): one line
# and exit 2. Anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, ConnectionError, PermissionError)
DEBUG = "--debug"  # shows a user error's traceback too (as HYDRA_FULL_ERROR=1 does)
HYDRA_FILES = {".hydra", "cli.log"}  # what Hydra writes into a run directory before the run starts


def user_error(command: str, err: BaseException, run_dir: Path | None = None) -> NoReturn:
    """Print ``err`` as one message and exit 2; a run directory that holds only Hydra's files goes."""
    if run_dir is not None and run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= HYDRA_FILES:
        shutil.rmtree(run_dir)
    print(f"{command}: {err}", file=sys.stderr)
    print(f"({DEBUG} or HYDRA_FULL_ERROR=1 shows where it was raised)", file=sys.stderr)
    sys.exit(2)


def user_cause(err: BaseException | None) -> BaseException | None:
    """The user error behind ``err`` (Hydra wraps what a ``_target_`` raised), or None for a bug."""
    from hydra.errors import InstantiationException

    while isinstance(err, InstantiationException):
        err = err.__cause__
    return err if isinstance(err, USER_ERRORS) else None


@contextlib.contextmanager
def user_errors(command: str, debug: bool, run_dir: Path | None = None) -> Iterator[None]:
    """A user error raised inside becomes ``user_error`` (unless ``debug``); anything else propagates."""
    try:
        yield
    except Exception as err:
        cause = user_cause(err)
        if debug or cause is None:
            raise
        user_error(command, cause, run_dir)


def debugging(argv: list[str]) -> tuple[bool, list[str]]:
    """Whether to show tracebacks (``--debug`` or ``HYDRA_FULL_ERROR=1``), and ``argv`` without the flag."""
    if DEBUG in argv:
        os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra then prints the whole traceback too
    return os.environ.get("HYDRA_FULL_ERROR") == "1", [a for a in argv if a != DEBUG]


def train(argv: list[str]) -> None:
    """train one run from the Hydra config (conf/config.yaml); args are Hydra overrides [--debug]"""
    import hydra
    from omegaconf import DictConfig

    from ablate import launch
    from ablate.connect import check_reachable

    debug, argv = debugging(argv)

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
    def _main(cfg: DictConfig) -> float:
        with user_errors("ablate train", debug, Path(cfg.output_dir)):
            check_reachable(cfg.tracking.uri, cfg.tracking.connect_timeout_s)  # before the heavy imports
            if cfg.launch.processes > 1 and not launch.launched():
                sys.exit(ranks(cfg, argv))  # the ranks run this same command
            from ablate.train import run

            return run(cfg)["h_acc"]

    sys.argv = ["ablate train", *argv]  # Hydra reads its overrides from sys.argv
    _main()


def ranks(cfg: Any, argv: list[str]) -> int:
    """``ablate train`` as ``launch.processes`` ranks; a run a killed rank left RUNNING ends FAILED."""
    from hydra.utils import instantiate

    from ablate import launch
    from ablate.tracking import fail_left_running

    code = launch.relaunch(cfg, argv)
    if code != 0:
        reason = f"a rank of this {cfg.launch.processes}-process run failed (launcher exit code {code})"
        fail_left_running(instantiate(cfg.tracking), str(Path(cfg.output_dir).resolve()), reason)
    return code


def evaluate(argv: list[str]) -> None:
    """recompute the paper's metrics from a predictions table (--predictions FILE)"""
    from ablate.evaluate import main

    debug, argv = debugging(argv)
    with user_errors("ablate evaluate", debug):
        main(argv)


def warmstart(argv: list[str]) -> None:
    """SFT a warm-start policy on worked solutions, or find it cached ([model=tiny_warm] [model.KEY=V])"""
    from hydra.errors import HydraException
    from hydra.utils import instantiate

    from ablate.config import check_targets, compose

    overrides = argv if any(a.startswith("model=") for a in argv) else ["model=tiny_warm", *argv]
    try:
        node = compose(overrides).model
        check_targets(node, "model")
        model = instantiate(node, _convert_="all")
        from ablate.warmstart import WarmStartConfig, summary_line, warm_path

        if not isinstance(model, WarmStartConfig):
            raise ValueError(
                f"model._target_={node._target_}: not a warm start (use model=tiny_warm or small_warm)"
            )
        path = warm_path(model)
    except (HydraException, ValueError, FileNotFoundError) as err:
        user_error("ablate warmstart", err)
    print(summary_line(path))


def split_sweep_args(argv: list[str]) -> tuple[str, list[str], list[str]]:
    """``study=NAME``, ``sweep.KEY=VALUE`` overrides, and the rest (ablate train overrides)."""
    study, sweep, rest = None, [], []
    for arg in argv:
        if arg.startswith("study="):
            study = arg.removeprefix("study=")
        elif arg.startswith("sweep."):
            sweep.append(arg)
        else:
            rest.append(arg)
    if not study:
        from ablate.sweep.study import study_choices

        print(
            f"ablate: study=NAME is required; valid choices are {', '.join(study_choices())}", file=sys.stderr
        )
        sys.exit(2)
    return study, sweep, rest


def sweep(argv: list[str]) -> None:
    """run or resume a study (study=NAME [train overrides] [sweep.workers=N] [sweep.storage=URL])"""
    from ablate.sweep.study import load_study

    study, sweep_args, train_args = split_sweep_args(argv)
    try:
        cfg = load_study(study, sweep_args, train_args)
        from ablate.config import compose
        from ablate.connect import check_reachable

        tracking = compose(cfg.overrides).tracking
        check_reachable(tracking.uri, tracking.connect_timeout_s)  # before the heavy imports
        from ablate.sweep.launcher import run_sweep

        code = run_sweep(cfg)
    except (ValueError, FileNotFoundError, ConnectionError, PermissionError) as err:
        user_error("ablate sweep", err)
    sys.exit(code)


def report(argv: list[str]) -> None:
    """a study's tables with 95% CIs and its figures (study=NAME [train overrides] [--out DIR])"""
    import argparse

    parser = argparse.ArgumentParser(prog="ablate report")
    parser.add_argument("--out", default=None, help="output folder (default: reports/<study>)")
    parser.add_argument("--bootstrap", type=int, default=2000, help="paired-bootstrap resamples")
    parser.add_argument("--no-log", action="store_true", help="do not log it on the study's MLflow run")
    parser.add_argument(
        "--effect", type=float, default=2.0, help="effect size the power table gives seeds for"
    )
    parser.add_argument(
        "--baseline", default="correctness", help="reward the power and paired tables compare with"
    )
    options, rest = parser.parse_known_args(argv)
    from ablate.sweep.study import load_study

    study, sweep_args, train_args = split_sweep_args(rest)
    try:
        cfg = load_study(study, sweep_args, train_args)
        from hydra.utils import instantiate

        from ablate.config import compose
        from ablate.report import Report

        tracking = instantiate(compose(cfg.overrides).tracking)
        rep = Report.load(
            cfg.sweep.name, tracking.uri, tracking.experiment, options.out, options.bootstrap, options.effect,
            options.baseline,
        )  # fmt: skip
        paths = rep.write(log=not options.no_log)
    except (ValueError, FileNotFoundError, ConnectionError) as err:
        user_error("ablate report", err)
    others = (rep.frame["status"] != "FINISHED").sum()
    print(f"study {cfg.sweep.name}: {len(rep.finished)} finished trial runs ({others} failed or pruned)")
    print(rep.markdown())
    from ablate.report.power import describe

    if not rep.power.empty:
        print(f"\npower (each variant vs {options.baseline}, two-sided t over seeds, alpha 0.05):")
        for row in rep.power.to_dict("records"):
            cell = " ".join(str(row[k]) for k in rep.keys)
            print(f"  {cell}: {describe(row, options.effect)}")
    if not rep.paired.empty:
        from ablate.report.paired import to_markdown

        print("\nquestion by question, change from the starting policy against value (paired.md):")
        print(to_markdown(rep.paired, options.baseline))
    print(f"\nwritten to {rep.out_dir}: " + ", ".join(p.name for p in paths))


def dashboard(argv: list[str]) -> None:
    """optuna-dashboard on a study's storage (study=NAME [sweep.storage=URL] [--host H] [--port P])"""
    import argparse

    parser = argparse.ArgumentParser(prog="ablate dashboard")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    parser.add_argument("--port", type=int, default=8080)
    options, rest = parser.parse_known_args(argv)
    from ablate.sweep.study import load_study

    study, sweep_args, train_args = split_sweep_args(rest)
    try:
        cfg = load_study(study, sweep_args, train_args)
        from ablate.sweep.launcher import storage_url_of

        url = storage_url_of(cfg)
    except (ValueError, FileNotFoundError) as err:
        user_error("ablate dashboard", err)
    import optuna_dashboard

    from ablate.connect import redact

    print(f"optuna-dashboard on {redact(url)}: http://{options.host}:{options.port}/dashboard")
    optuna_dashboard.run_server(url, host=options.host, port=options.port)


COMMANDS: dict[str, Callable[[list[str]], None]] = {
    "train": train,
    "warmstart": warmstart,
    "evaluate": evaluate,
    "sweep": sweep,
    "report": report,
    "dashboard": dashboard,
}


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
    print(f"ablate: {problem}; valid choices are {', '.join(COMMANDS)}\n{usage}", file=sys.stderr)
    sys.exit(2)
