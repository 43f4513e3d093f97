"""Study files (``studies/<name>.yaml``): what a sweep trains, and how it searches.

A study is declarative: the ``ablate train`` overrides every trial shares, then either a
``grid`` (every combination once: an ablation table) or a ``space`` of Optuna distributions
searched by a sampler (TPE over alpha, ...), the objective(s), the pruner and how to run it
(``sweep``: workers, storage). Each trial's config is composed by Hydra from the overrides
plus the trial's parameters, so a parameter is any train key: ``reward``, ``algo``, ``seed``,
``reward.alpha``, ``model``...
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ablate.names import GROUPS, METRICS

STUDIES_DIR = Path(__file__).resolve().parents[2] / "studies"
DIRECTIONS = ("maximize", "minimize")


@dataclass
class ObjectiveMetric:
    """One value a trial returns to Optuna."""

    metric: str = "h_acc"  # a final eval metric: one of METRICS
    direction: str = "maximize"  # maximize | minimize


@dataclass
class SweepConfig:
    """How a study is run; the study file may set these and ``sweep.KEY=VALUE`` overrides them."""

    name: str | None = None  # study name in the storage (None: the study file's name)
    workers: int = 1  # trials run at once on this machine, each in its own process
    # trials one worker process runs one after another before it exits: more than 1 saves the
    # start-up (imports) of each trial; 1 returns all memory (a GPU's included) between trials
    trials_per_worker: int = 1
    # Optuna storage: any SQLAlchemy URL (sqlite:///F, postgresql+psycopg://U:P@H/DB) or
    # journal:PATH (Optuna's journal file); None: optuna.db beside a SQLite MLflow store
    storage: str | None = None
    dir: str | None = None  # trial run directories and worker logs (None: runs/sweeps/<name>)
    heartbeat_s: int = 10  # a running trial writes a heartbeat this often (SQL storages)
    grace_s: int | None = None  # silent this long: the trial is failed, retried (None: 3 x heartbeat_s)
    max_retry: int = 3  # retries of a trial whose worker died (killed, lost machine)
    poll_s: float = 1.0  # how often the launcher looks at the storage
    gpus: list[int] | None = None  # GPUs to pin trials to (None: all visible; [] : none)
    # devices (and processes: `launch.processes`) of one trial; >1 runs it under accelerate launch
    devices_per_trial: int = 1
    progress: bool = True  # Optuna-style progress bar on the terminal


@dataclass
class StudyConfig:
    """A study file. Exactly one of ``grid`` and ``space`` is given."""

    description: str = ""  # one line: what the study asks
    overrides: list[str] = field(default_factory=list)  # ablate train overrides every trial shares
    grid: dict[str, list[Any]] = field(default_factory=dict)  # param -> values: every combination once
    space: dict[str, Any] = field(default_factory=dict)  # param -> optuna distribution (a _target_ node)
    n_trials: int | None = None  # trials of a ``space`` search (a grid runs each cell once)
    sampler: Any = None  # an optuna sampler as a _target_ node (None: GridSampler / TPESampler(seed=0))
    pruner: Any = None  # an optuna pruner as a _target_ node (None: no pruning)
    # what a trial returns to Optuna; more than one: a multi-objective study
    objectives: list[ObjectiveMetric] = field(default_factory=lambda: [ObjectiveMetric()])
    sweep: SweepConfig = field(default_factory=SweepConfig)  # how to run it


def study_choices() -> list[str]:
    return sorted(p.stem for p in STUDIES_DIR.glob("*.yaml"))


def study_path(study: str) -> Path:
    """``quickstart`` -> ``studies/quickstart.yaml``; a path to a YAML file is taken as it is."""
    if study.endswith((".yaml", ".yml")) or "/" in study:
        path = Path(study)
        if not path.is_file():
            raise FileNotFoundError(f"study file {path} does not exist")
        return path
    path = STUDIES_DIR / f"{study}.yaml"
    if not path.is_file():
        raise ValueError(f"study={study!r}: no {path}; valid choices are {', '.join(study_choices())}")
    return path


def load_study(study: str, sweep_overrides: list[str] = (), train_overrides: list[str] = ()) -> DictConfig:
    """The study file checked against ``StudyConfig``, with the command line's overrides applied.

    ``sweep_overrides`` are ``sweep.KEY=VALUE``; ``train_overrides`` go after the file's overrides
    (so they win). Errors name the file and the key.
    """
    path = study_path(study)
    schema = OmegaConf.structured(StudyConfig)
    try:
        cfg = OmegaConf.merge(schema, OmegaConf.load(path))
    except OmegaConfBaseException as err:
        raise ValueError(f"{path}: {err.full_key}: {err.msg.splitlines()[0]}") from None
    try:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(sweep_overrides)))
    except OmegaConfBaseException as err:
        valid = ", ".join(f"sweep.{k}" for k in OmegaConf.structured(SweepConfig))
        raise ValueError(f"{err.full_key}: {err.msg.splitlines()[0]}; valid keys are {valid}") from None
    cfg.overrides = [*cfg.overrides, *train_overrides]
    if cfg.sweep.name is None:
        cfg.sweep.name = path.stem
    check(cfg, path)
    return cfg


def check(cfg: DictConfig, path: Path) -> None:
    """What the schema cannot say: one of grid/space, known metrics, importable targets."""
    if bool(cfg.grid) == bool(cfg.space):
        raise ValueError(f"{path}: give exactly one of 'grid' (every combination) and 'space' (a search)")
    if cfg.space and not cfg.n_trials:
        raise ValueError(f"{path}: n_trials: a 'space' search needs a number of trials")
    for key, values in cfg.grid.items():
        if not values:
            raise ValueError(f"{path}: grid.{key}: needs at least one value")
        for value in values:
            if not (value is None or isinstance(value, bool | int | float | str)):
                raise ValueError(f"{path}: grid.{key}: {value!r} is not a single value (str, number, bool)")
    for i, objective in enumerate(cfg.objectives):
        for key, valid in (("metric", METRICS), ("direction", DIRECTIONS)):
            if objective[key] not in valid:
                raise ValueError(
                    f"{path}: objectives[{i}].{key}={objective[key]!r}; valid choices are {', '.join(valid)}"
                )
    if cfg.pruner is not None and len(cfg.objectives) > 1:
        raise ValueError(f"{path}: pruner: Optuna cannot prune a multi-objective study")
    if cfg.sweep.devices_per_trial < 1:
        raise ValueError(f"sweep.devices_per_trial={cfg.sweep.devices_per_trial}: needs at least 1")
    nodes = {"sampler": cfg.sampler, "pruner": cfg.pruner} | {f"space.{k}": v for k, v in cfg.space.items()}
    for key, node in nodes.items():
        if node is None:
            continue
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise ValueError(f"{path}: {key}: expected a node with a _target_ (an optuna class)")
        try:
            get_class(node._target_)
        except Exception as err:
            raise ValueError(f"{path}: {key}._target_={node._target_!r} cannot be imported: {err}") from None
    if cfg.sweep.workers < 1:
        raise ValueError(f"sweep.workers={cfg.sweep.workers}: needs at least 1")
    if cfg.sweep.trials_per_worker < 1:
        raise ValueError(f"sweep.trials_per_worker={cfg.sweep.trials_per_worker}: needs at least 1")


def grid_cells(cfg: DictConfig) -> list[dict[str, Any]]:
    """Every combination of the grid, in file order (the first key varies slowest)."""
    keys = list(cfg.grid)
    values = [list(cfg.grid[k]) for k in keys]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


def cell_key(params: dict[str, Any]) -> str:
    """A cell's identity, independent of key order."""
    return json.dumps(params, sort_keys=True)


def cell_of(trial: Any) -> dict[str, Any]:
    """The grid cell an Optuna trial holds: its parameters, or those it was queued with."""
    return trial.params or trial.system_attrs.get("fixed_params", {})


SHORT = {"alpha": "a", "seed": "s"}  # how a cell's name abbreviates a parameter


def short_name(params: dict[str, Any]) -> str:
    """The cell in a few characters, the trial's MLflow run name: a group choice by its value, others
    by their last key (abbreviated), the seed last as ``s<seed>``.

    >>> short_name({"reward": "rlev", "reward.alpha": 10, "seed": 0})
    'rlev a=10 s0'
    >>> short_name({"lr": 0.000123456, "algo": "rloo"})
    'lr=0.0001235 rloo'
    """
    parts = []
    for key, value in params.items():
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        name = key.rsplit(".", 1)[-1]
        if key in GROUPS:
            parts.append(text)
        elif name == "seed":
            parts.append(f"s{text}")
        else:
            parts.append(f"{SHORT.get(name, name)}={text}")
    return " ".join(parts)


def trial_overrides(cfg: Any, params: dict[str, Any]) -> list[str]:
    """A trial's ``ablate train`` overrides: the study's, one process per device, then its cell's."""
    processes = cfg.sweep.devices_per_trial
    launch = [f"launch.processes={processes}"] if processes > 1 else []
    return [*cfg.overrides, *launch, *(override(k, v) for k, v in params.items())]


def override(key: str, value: Any) -> str:
    """A trial parameter as a Hydra override: ``reward=rlev``, ``reward.alpha=10``, ``x=null``."""
    if value is None:
        return f"{key}=null"
    if isinstance(value, bool):
        return f"{key}={str(value).lower()}"
    return f"{key}={value}"


def fingerprint(cfg: DictConfig) -> dict[str, Any]:
    """What makes two invocations the same study (stored with it; a resume must match)."""
    return {
        "overrides": list(cfg.overrides),
        "grid": OmegaConf.to_container(cfg.grid),
        "space": OmegaConf.to_container(cfg.space),
        "objectives": [f"{o.metric}:{o.direction}" for o in cfg.objectives],
    }
