"""One function hides the Optuna storage behind a URL; the study's Optuna objects from its file;
``open_study`` creates or loads it (the launcher creates or resumes, a trial's worker loads).

``sqlite:///F`` and any SQLAlchemy URL (``postgresql+psycopg://...``) give an ``RDBStorage``
with heartbeats, so a trial whose worker died is failed and retried; ``journal:PATH`` gives
Optuna's journal file storage (no heartbeat: ``ablate sweep`` still fails and retries the
trials of its own workers that died).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import optuna
import sqlalchemy
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from ablate.connect import redact
from ablate.names import ATTR_RUN_ID, STUDY_ATTR_SPEC, TAG_ERROR
from ablate.sweep.study import fingerprint, grid_cells

log = logging.getLogger(__name__)
LIVE = (TrialState.WAITING, TrialState.RUNNING)
DONE = (TrialState.COMPLETE, TrialState.PRUNED)
JOURNAL = "journal:"
T = TypeVar("T")
# What a database restart looks like from SQLAlchemy: the error itself, or the transaction it
# left invalid on a pooled connection.
LOST_CONNECTION = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.PendingRollbackError,
)


def retrying(call: Callable[[], T], patience_s: float = 120.0) -> T:
    """``call()``, retried while the database does not answer (a restart, a network blip).

    SQLAlchemy's pre-ping then reconnects; after ``patience_s`` the error is raised.
    """
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return call()
        except (*LOST_CONNECTION, optuna.exceptions.StorageInternalError) as err:
            # Optuna rolls its session back and wraps the driver's error; look at what it wraps.
            cause = err.__cause__ if isinstance(err, optuna.exceptions.StorageInternalError) else err
            if not isinstance(cause, LOST_CONNECTION) or time.monotonic() > deadline:
                raise  # not a lost connection, or lost for too long
            log.warning("Optuna storage not answering (%s); retrying", str(cause).strip()[:200])
            time.sleep(1.0)


class PatientRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDBStorage whose heartbeat outlives a database restart.

    Optuna writes heartbeats from a thread that dies on its first error; a trial whose heartbeat
    stopped would be failed and retried while it is still training.
    """

    def record_heartbeat(self, trial_id: int) -> None:
        retrying(lambda: super(PatientRDBStorage, self).record_heartbeat(trial_id))


def worker_ident(pid: int | None = None) -> str:
    """``host:pid`` of a worker process (this one by default): a trial's ``worker`` attribute, by which
    a launcher finds the trials of a worker that died."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def default_storage_url(tracking_uri: str) -> str:
    """``optuna.db`` beside a SQLite MLflow store, else in the working directory."""
    if tracking_uri.startswith("sqlite:///"):
        folder = Path(tracking_uri.removeprefix("sqlite:///")).parent
        return f"sqlite:///{folder / 'optuna.db'}"
    return "sqlite:///optuna.db"


def retry_failed(study: optuna.Study, trial: optuna.trial.FrozenTrial, max_retry: int) -> None:
    """Queue a failed trial's cell again (at most ``max_retry`` times), as Optuna retries a dead one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(study, trial)


class RetryAndMarkRun(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a dead trial, plus its MLflow run marked FAILED (it would stay RUNNING)."""

    def __init__(self, max_retry: int, tracking_uri: str | None):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__init__(max_retry=max_retry)
        self.tracking_uri = tracking_uri

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        super().__call__(study, trial)
        log.warning("trial %d lost its worker; failed and queued again", trial.number)
        run_id = trial.user_attrs.get(ATTR_RUN_ID)
        if run_id and self.tracking_uri:
            from mlflow import MlflowClient

            client = MlflowClient(self.tracking_uri)
            try:
                client.set_tag(
                    run_id, TAG_ERROR, "worker lost (killed or no heartbeat); the trial was retried"
                )
                client.set_terminated(run_id, status="FAILED")
            except Exception as err:  # the trial's retry matters more than its old run's status
                log.warning("could not mark MLflow run %s FAILED: %s", run_id, err)


def get_storage(
    url: str,
    heartbeat_s: int = 10,
    grace_s: int | None = None,
    on_stale: RetryAndMarkRun | None = None,
) -> optuna.storages.BaseStorage:
    """The Optuna storage behind ``url``; SQL storages get heartbeats and ``on_stale``."""
    if url.startswith(JOURNAL):
        path = Path(url.removeprefix(JOURNAL))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Workers, the launcher and heartbeats all write: wait for the file lock, do not fail.
        engine_kwargs["connect_args"] = {"timeout": 120}
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    else:
        engine_kwargs["pool_pre_ping"] = True  # a restarted database server is reconnected to
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            storage = PatientRDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_s,
                grace_period=grace_s or 3 * heartbeat_s,
                heartbeat_stale_trial_callback=on_stale,
            )
        except Exception as err:
            raise ConnectionError(f"Optuna storage {redact(url)}: {err}") from None
    if url.startswith("sqlite"):
        serialize_sqlite_transactions(storage.engine)
    return storage


def serialize_sqlite_transactions(engine: sqlalchemy.engine.Engine) -> None:
    """Make every SQLite transaction take the write lock when it begins (BEGIN IMMEDIATE).

    Optuna takes a queued trial by reading its state and setting it RUNNING if it was WAITING;
    PostgreSQL locks the row (SELECT ... FOR UPDATE), but SQLite ignores that and, with its
    default deferred transactions, two workers can both read WAITING and both take the trial
    (tests/sweep/test_storage.py shows it). Serialized transactions make the check-and-set atomic.
    """

    @sqlalchemy.event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver's own BEGIN would be deferred

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened while creating the tables predate the listeners


def sampler_of(cfg: DictConfig, cells: list[dict[str, Any]]) -> optuna.samplers.BaseSampler:
    """The study's sampler; a grid's cells are queued, so GridSampler only records the grid."""
    if cfg.sampler is not None:
        if cfg.grid and issubclass(get_class(cfg.sampler._target_), optuna.samplers.GridSampler):
            return instantiate(cfg.sampler, search_space=_grid_space(cells))
        return instantiate(cfg.sampler)
    if cfg.grid:
        return optuna.samplers.GridSampler(_grid_space(cells), seed=0)
    return optuna.samplers.TPESampler(seed=0)


def pruner_of(cfg: DictConfig) -> optuna.pruners.BasePruner:
    return optuna.pruners.NopPruner() if cfg.pruner is None else instantiate(cfg.pruner)


def _grid_space(cells: list[dict[str, Any]]) -> dict[str, list[Any]]:
    space: dict[str, list[Any]] = {}
    for cell in cells:
        for key, value in cell.items():
            if value not in space.setdefault(key, []):
                space[key].append(value)
    return space


def suggest(trial: optuna.Trial, name: str, distribution: Any) -> Any:
    """A parameter from an Optuna distribution, through the trial's public suggest API."""
    d = optuna.distributions
    if isinstance(distribution, d.FloatDistribution):
        return trial.suggest_float(name, distribution.low, distribution.high, step=distribution.step,
                                   log=distribution.log)  # fmt: skip
    if isinstance(distribution, d.IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high, step=distribution.step,
                                 log=distribution.log)  # fmt: skip
    if isinstance(distribution, d.CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    raise TypeError(f"space.{name}: {type(distribution).__name__} is not an Optuna distribution")


def open_study(cfg: DictConfig, storage: Any, create: bool = False) -> tuple[optuna.Study, bool]:
    """The study in ``storage`` and whether this call created it (``create``: if it does not exist).

    A launcher creates or resumes it, and a resumed study must be the same study (overrides, grid,
    objectives); a trial's worker only loads it.
    """
    name = cfg.sweep.name
    sampler = sampler_of(cfg, grid_cells(cfg) if cfg.grid else [])
    pruner = pruner_of(cfg)
    if not create:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner), False
    directions = [o.direction for o in cfg.objectives]
    try:
        study = optuna.create_study(
            study_name=name, storage=storage, directions=directions, sampler=sampler, pruner=pruner
        )
        study.set_user_attr(STUDY_ATTR_SPEC, fingerprint(cfg))
        with warnings.catch_warnings():  # "experimental" since Optuna 3.2; nothing a user can act on
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([o.metric for o in cfg.objectives])  # the dashboard's axis labels
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    stored = stored_attr(study, STUDY_ATTR_SPEC, wait_s=10)  # its creator may not have written it yet
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
