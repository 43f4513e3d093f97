"""The ``ablate`` command: ``ablate train [hydra overrides]``, ``ablate evaluate --predictions F``."""

from __future__ import annotations

import sys
from collections.abc import Callable

from ablate.config import CONF_DIR


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
        sys.exit(f"ablate warmstart: {err}")
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

        sys.exit(f"ablate: study=NAME is required; valid choices are {', '.join(study_choices())}")
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
        sys.exit(f"ablate sweep: {err}")
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
        sys.exit(f"ablate report: {err}")
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
        sys.exit(f"ablate dashboard: {err}")
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
    sys.exit(f"ablate: {problem}; valid choices are {', '.join(COMMANDS)}\n{usage}")
