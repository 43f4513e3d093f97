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
import re
import sys
from pathlib import Path
from typing import Any

import optuna
from hydra.utils import instantiate
from mlflow import MlflowClient
from mlflow.entities import Param
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from ablate import launch
from ablate.config import compose
from ablate.connect import redact
from ablate.names import (
    ATTR_DUPLICATE_OF,
    EVAL_PREFIX,
    GROUPS,
    PARAM_GRID,
    PARAM_N_TRIALS,
    PARAM_SPACE,
    PARAM_STORAGE,
    RESULTS_CSV,
    RESULTS_TABLE,
    RESULTS_TXT,
    ROLE_STUDY,
    ROLE_TRIAL,
    STUDY_ATTR_PARENT,
    TAG_ERROR,
    TAG_OPTUNA_STUDY,
    TAG_ROLE,
    TAG_STUDY,
)
from ablate.sweep.pool import WorkerPool, visible_gpus, worker_env
from ablate.sweep.results import complete, describe, format_table, results_table, summary_metrics
from ablate.sweep.serve import Servers, check_managed
from ablate.sweep.storage import (
    DONE,
    LIVE,
    RetryAndMarkRun,
    default_storage_url,
    get_storage,
    open_study,
    stored_attr,
)
from ablate.sweep.study import cell_key, cell_of, grid_cells, trial_overrides
from ablate.tracking import (
    TrackingConfig,
    column,
    ensure_experiment,
    run_url,
    runs_view_url,
    serve_hint,
    share_runs_view,
)

log = logging.getLogger(__name__)


def check_configs(cfg: DictConfig, cells: list[dict[str, Any]]) -> DictConfig:
    """Compose every grid cell's train config now, so a bad override fails before any training.

    A study of multi-process runs (``launch.processes=P`` in its overrides, an experiment's) gets P
    devices per trial unless ``sweep.devices_per_trial`` says so itself.
    """
    base = compose(list(cfg.overrides))
    if cfg.sweep.devices_per_trial == 1 and base.launch.processes > 1:
        cfg.sweep.devices_per_trial = base.launch.processes
    devices = cfg.sweep.devices_per_trial
    if base.launch.processes not in (1, devices):
        raise ValueError(
            f"study {cfg.sweep.name}: launch.processes={base.launch.processes} with sweep.devices_per_trial="
            f"{devices}: a trial has one process per device (give both one number, or launch.processes alone)"
        )
    trials = [base if devices == 1 else compose(trial_overrides(cfg, {}))]  # composed once when the same
    for cell in cells:
        try:
            trials.append(compose(trial_overrides(cfg, cell)))
        except Exception as err:
            raise ValueError(f"study {cfg.sweep.name}: grid cell {cell}: {err}") from None
    if devices > 1:
        gpus = visible_gpus(cfg.sweep.gpus)
        worker_env(0, cfg.sweep.workers, gpus, devices)  # more devices per trial than GPUs: said now
        for trial in trials:
            launch.check(trial.launch, cuda=bool(gpus))
    return base


def managed_servers(cfg: DictConfig, base: DictConfig, sweep_dir: Path) -> Servers | None:
    """The study's vLLM servers when ``rollout.managed=true`` (checked now, started by the pool)."""
    gpus = visible_gpus(cfg.sweep.gpus) if base.rollout.get("managed", False) else []
    if not check_managed(cfg, base, gpus):
        return None
    return Servers(base, gpus, cfg.sweep.devices_per_trial, sweep_dir / "logs")


def parent_run(
    study: optuna.Study, cfg: DictConfig, tracking: TrackingConfig, storage_url: str, created: bool
) -> str:
    """The study's MLflow run (one per study; reopened on resume, shared across machines)."""
    client = MlflowClient(tracking.uri)
    # The launcher that created the study creates its run; others wait for it (unless it died).
    run_id = None if created else stored_attr(study, STUDY_ATTR_PARENT, wait_s=30)
    if run_id:
        client.update_run(run_id, status="RUNNING")
        return run_id
    experiment_id = ensure_experiment(tracking)
    name = cfg.sweep.name
    tags = {
        TAG_STUDY: name,
        TAG_ROLE: ROLE_STUDY,
        TAG_OPTUNA_STUDY: name,
        "optuna.storage": redact(storage_url),
        "optuna.sampler": type(study.sampler).__name__,
        "mlflow.note.content": cfg.description,
    }
    run_id = client.create_run(experiment_id, run_name=f"study {name}", tags=tags).info.run_id
    params = {
        "study.name": name,
        PARAM_STORAGE: redact(storage_url),
        "study.sampler": type(study.sampler).__name__,
        "study.pruner": type(study.pruner).__name__,
        "study.objectives": ",".join(f"{o.metric}:{o.direction}" for o in cfg.objectives),
        PARAM_N_TRIALS: str(len(grid_cells(cfg)) if cfg.grid else cfg.n_trials),
        "study.overrides": json.dumps(redact(list(cfg.overrides))),
        PARAM_GRID: json.dumps(OmegaConf.to_container(cfg.grid)),
        PARAM_SPACE: json.dumps(OmegaConf.to_container(cfg.space)),
    }
    client.log_batch(run_id, params=[Param(k, v[:6000]) for k, v in params.items()])
    study.set_user_attr(STUDY_ATTR_PARENT, run_id)
    return run_id


def queue_missing_cells(study: optuna.Study, cells: list[dict[str, Any]]) -> int:
    """Queue every cell without a done or live trial (a first run, or cells that failed before)."""
    held = {cell_key(cell_of(t)) for t in study.get_trials(deepcopy=False, states=(*DONE, *LIVE))}
    missing = [c for c in cells if cell_key(c) not in held]
    for cell in missing:
        study.enqueue_trial(cell)
    return len(missing)


# The eval metrics a study's runs table shows (the rest are a click away in "Columns").
STUDY_COLUMNS = ("h_acc", "acc", "length", "value_density", "length_gap")


def study_view(cfg: DictConfig, tracking: TrackingConfig, experiment_id: str) -> str:
    """The study's trial runs as one MLflow table, best first by the first objective, with the study's
    parameters and eval metrics as columns; the URL that opens it."""
    name = cfg.sweep.name
    view = "ablate-" + re.sub(r"[^\w.-]", "-", name)
    keys = list(cfg.grid or cfg.space)
    groups = [g for g in GROUPS if g in keys or g in {k.split(".")[0] for k in keys}]
    columns = [column("params", k) for k in dict.fromkeys([*groups, *keys])]
    columns += [column("metrics", f"{EVAL_PREFIX}{m}") for m in STUDY_COLUMNS]
    where = f"tags.`{TAG_STUDY}` = '{name}' and tags.`{TAG_ROLE}` = '{ROLE_TRIAL}'"
    objective = cfg.objectives[0]  # best first
    order_by = column("metrics", f"{EVAL_PREFIX}{objective.metric}")
    share_runs_view(
        tracking.uri, experiment_id, view, where, columns, order_by, objective.direction == "minimize"
    )
    return runs_view_url(tracking.uri, experiment_id, view)


def study_note(cfg: DictConfig, view_url: str, parent_url: str) -> str:
    """The study's note on the Optuna dashboard (Markdown)."""
    return (
        f"## {cfg.sweep.name}\n\n{cfg.description}\n\n"
        f"- [its trial runs in MLflow]({view_url})\n- [the study's MLflow run]({parent_url})\n"
    )


def browse_hint(tracking: TrackingConfig, view_url: str, parent_url: str, storage_url: str, study_id: int,
                study_name: str) -> str:  # fmt: skip
    mlflow_lines = f"MLflow UI: {view_url}{serve_hint(tracking.uri)}\nthe study's run: {parent_url}"
    dashboard = f"ablate dashboard study={study_name}"
    if storage_url != default_storage_url(tracking.uri):
        dashboard += f" sweep.storage='{redact(storage_url)}'"
    return f"{mlflow_lines}\nOptuna dashboard: {dashboard}  ->  http://127.0.0.1:8080/dashboard/studies/{study_id}"


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
    name = cfg.sweep.name
    sweep_dir = Path(cfg.sweep.dir or f"runs/sweeps/{name}")
    servers = managed_servers(cfg, base, sweep_dir)
    tracking: TrackingConfig = instantiate(base.tracking)
    experiment_id = ensure_experiment(tracking)  # fails fast, naming the URI, if a server is down
    storage_url = storage_url_of(cfg, tracking)
    on_stale = RetryAndMarkRun(cfg.sweep.max_retry, tracking.uri)
    storage = get_storage(storage_url, cfg.sweep.heartbeat_s, cfg.sweep.grace_s, on_stale)
    study, created = open_study(cfg, storage, create=True)
    queued = queue_missing_cells(study, cells) if cfg.grid else 0
    run_id = parent_run(study, cfg, tracking, storage_url, created)
    view_url = study_view(cfg, tracking, experiment_id)
    parent_url = run_url(tracking.uri, experiment_id, run_id)
    if created:
        from optuna_dashboard import save_note

        save_note(study, study_note(cfg, view_url, parent_url))
    print(
        f"study {name!r} ({'new' if created else 'resumed'}) in {redact(storage_url)}: "
        f"{len(cells) or cfg.n_trials} trials, {queued} queued now, {cfg.sweep.workers} worker(s)"
    )
    spec = {
        "study": OmegaConf.to_container(cfg),
        "storage": storage_url,
        "tracking_uri": tracking.uri,
        "parent_run_id": run_id,
        "experiment_id": experiment_id,
        "dir": str(sweep_dir),
    }
    client = MlflowClient(tracking.uri)
    try:
        WorkerPool(cfg, study, spec, on_stale, servers).run()
    except BaseException as err:
        client.set_tag(run_id, TAG_ERROR, f"{type(err).__name__}: {err}"[:5000])
        client.set_terminated(run_id, status="KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise
    objective = cfg.objectives[0].metric
    table = results_table(study, grid=bool(cfg.grid), objective=objective)
    text = format_table(table)
    heading = f"study {name}: {cfg.description}".rstrip(": ")
    print(f"\n{heading}\n{text}\n")
    if not table.empty:
        client.log_text(run_id, table.to_csv(index=False), RESULTS_CSV)
        client.log_text(run_id, f"{heading}\n{text}\n", RESULTS_TXT)
        client.log_table(run_id, data=table, artifact_file=RESULTS_TABLE)
        client.log_batch(run_id, metrics=summary_metrics(table, grid=bool(cfg.grid)))
    trials = study.get_trials(deepcopy=False)
    finished = complete(cfg, trials)
    client.set_terminated(run_id, status="FINISHED" if finished else "FAILED")
    study_id = storage.get_study_id_from_name(name)
    print(browse_hint(tracking, view_url, parent_url, storage_url, study_id, name))
    if not finished:
        failed = [
            describe(t)
            for t in trials
            if t.state == TrialState.FAIL and ATTR_DUPLICATE_OF not in t.user_attrs
        ]
        print("\nnot every trial completed; failed trials (run the same command again to retry them):\n"
              + "\n".join(failed), file=sys.stderr)  # fmt: skip
        return 1
    return 0
