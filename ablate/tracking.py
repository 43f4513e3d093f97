"""MLflow tracking of one training run: params, tags, per-step metrics, eval metrics, artifacts.

Per-step metrics are buffered and go through MLflow's asynchronous logging in batches, so a
remote server never stalls training; everything is flushed before the run is closed. A run
that raises is closed as FAILED with the error kept in the run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import mlflow
import mlflow.exceptions
from mlflow.entities import Metric
from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAM_VAL_LENGTH
from omegaconf import DictConfig, OmegaConf
from transformers import TrainerCallback

from ablate.connect import check_reachable, is_server, redact
from ablate.names import CONFIG_FILE, SHARED_VIEW_PREFIX, TAG_ERROR, TAG_OUTPUT_DIR

log = logging.getLogger(__name__)
ASYNC_BUFFER_ENV = "MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS"


@dataclass
class TrackingConfig:
    """Where runs go: a local SQLite store (``tracking=local``) or a server (``tracking=server``)."""

    uri: str = "sqlite:///mlflow.db"  # MLflow tracking URI: sqlite:///FILE or http(s)://HOST:PORT
    experiment: str = "ablate"  # MLflow experiment name
    connect_timeout_s: float = 10.0  # an unreachable server fails the command within this time
    sample_completions: int = 32  # evaluation completions kept in samples.jsonl
    artifact_location: str | None = None  # artifacts of a new experiment (None: beside a SQLite store)
    flush_every_s: float = 10.0  # per-step metrics are sent in one batch at most this often (and at the end)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay whole (one param)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def redacted(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config with secrets (passwords in URLs, API keys) redacted: all a run ever records."""
    return redact(OmegaConf.to_container(cfg, resolve=True))


def config_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.create(redacted(cfg)))


def params_of(cfg: DictConfig) -> dict[str, str]:
    """The flattened resolved config, redacted, each value within MLflow's length limit."""
    return {k: str(v)[:MAX_PARAM_VAL_LENGTH] for k, v in flatten(redacted(cfg)).items()}


def default_artifact_location(uri: str) -> str | None:
    """``mlartifacts/`` beside a SQLite store (MLflow would use the working directory); servers decide."""
    if uri.startswith("sqlite:///"):
        return str(Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts")
    return None


def git_commit(path: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def numeric(logs: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in logs.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            out[key] = float(value)
    return out


def ensure_experiment(cfg: TrackingConfig) -> str:
    """The id of ``cfg.experiment``, created (artifacts beside a SQLite store) if it does not exist."""
    check_reachable(cfg.uri, cfg.connect_timeout_s)
    client = mlflow.MlflowClient(cfg.uri)
    try:
        experiment = client.get_experiment_by_name(cfg.experiment)
    except mlflow.exceptions.MlflowException as err:
        if err.get_http_status_code() not in (401, 403):
            raise
        raise PermissionError(
            f"MLflow tracking server {redact(cfg.uri)} refused the request "
            f"({'not authenticated' if err.get_http_status_code() == 401 else 'no permission'}): "
            "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to an account of that server"
        ) from None
    if experiment is None:
        location = cfg.artifact_location or default_artifact_location(cfg.uri)
        with contextlib.suppress(mlflow.exceptions.MlflowException):  # created meanwhile by another run
            return client.create_experiment(cfg.experiment, artifact_location=location)
        experiment = client.get_experiment_by_name(cfg.experiment)
    return experiment.experiment_id


LOCAL_UI = "http://127.0.0.1:5000"  # where ``mlflow ui --backend-store-uri URI`` serves a local store
# The experiment page opens in MLflow 3's GenAI view (traces) unless the URL asks for the training view.
TRAINING_VIEW = "workflowType=machine_learning"


def ui_address(uri: str) -> str:
    """The MLflow UI serving ``uri``: the server itself (without credentials), or ``mlflow ui``'s default."""
    if is_server(uri):
        return re.sub(r"//[^/@]*@", "//", uri.rstrip("/"))
    return LOCAL_UI


def serve_hint(uri: str) -> str:
    """How to serve a local store for the links printed beside it (nothing for a server)."""
    return "" if is_server(uri) else f"  (serve it: mlflow ui --backend-store-uri {uri})"


def run_url(uri: str, experiment_id: str, run_id: str) -> str:
    """A run's page in the MLflow UI.

    >>> run_url("http://user:pw@mlflow:5000/", "3", "ab12")
    'http://mlflow:5000/#/experiments/3/runs/ab12?workflowType=machine_learning'
    """
    return f"{ui_address(uri)}/#/experiments/{experiment_id}/runs/{run_id}?{TRAINING_VIEW}"


def runs_view_url(uri: str, experiment_id: str, view: str | None = None) -> str:
    """The experiment's runs table in the training view, in the shared view ``view`` if given."""
    shared = f"&viewStateShareKey={view}" if view else ""
    return f"{ui_address(uri)}/#/experiments/{experiment_id}/runs?{TRAINING_VIEW}{shared}"


def share_runs_view(
    uri: str, experiment_id: str, view: str, search_filter: str, columns: list[str], order_by: str,
    ascending: bool = False,
) -> None:  # fmt: skip
    """Store a runs-table view (a filter, the columns it shows, their order) that ``runs_view_url(..., view)``
    opens.

    MLflow keeps a shared view as an experiment tag; ``columns`` and ``order_by`` are MLflow column keys
    (``metrics.`eval/h_acc```, ``params.`reward```). Sorted by anything but start time, the UI lists child
    runs as rows of their own instead of folding them under their parent.
    """
    state = {
        "searchFilter": search_filter,
        "orderByKey": order_by,
        "orderByAsc": ascending,
        "selectedColumns": columns,
    }
    mlflow.MlflowClient(uri).set_experiment_tag(experiment_id, SHARED_VIEW_PREFIX + view, json.dumps(state))


def column(kind: str, key: str) -> str:
    """An MLflow runs-table column key: ``column("metrics", "eval/h_acc")`` is ``metrics.`eval/h_acc```."""
    return f"{kind}.`{key}`"


class TrackedRun:
    """A context manager around one MLflow run; ``with TrackedRun(...) as run: ...``."""

    def __init__(
        self,
        cfg: TrackingConfig,
        run_name: str,
        tags: dict[str, Any],
        parent_run_id: str | None = None,
        active: bool = True,
    ):
        self.cfg = cfg
        self.active = active  # False on the ranks other than 0 of a multi-process run: they log nothing
        self.run_name = run_name
        self.tags = {k: str(v) for k, v in tags.items() if v is not None}
        self.parent_run_id = parent_run_id  # nests this run under another (a sweep's study run)
        self.run_id: str | None = None
        self.experiment_id: str | None = None

    def __enter__(self) -> TrackedRun:
        if not self.active:
            return self
        # MLflow's async logging thread otherwise waits in a 1 s queue poll that every flush (the
        # run's end, the process's exit) sits out: about 0.7 s each. Buffered, it waits on the event
        # a flush sets, and still sends a batch each second.
        os.environ.setdefault(ASYNC_BUFFER_ENV, "1")
        ensure_experiment(self.cfg)
        mlflow.set_tracking_uri(self.cfg.uri)
        mlflow.set_experiment(self.cfg.experiment)
        started = mlflow.start_run(run_name=self.run_name, tags=self.tags, parent_run_id=self.parent_run_id)
        self.run_id, self.experiment_id = started.info.run_id, started.info.experiment_id
        return self

    @property
    def url(self) -> str:
        """The run's page in the MLflow UI."""
        return run_url(self.cfg.uri, self.experiment_id, self.run_id)

    def set_tags(self, tags: dict[str, Any]) -> None:
        if not self.active:
            return
        for key, value in tags.items():
            mlflow.MlflowClient().set_tag(self.run_id, key, str(value))

    def log_params(self, params: dict[str, str]) -> None:
        if not self.active:
            return
        items = list(params.items())
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            mlflow.log_params(dict(items[i : i + 100]), run_id=self.run_id)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if metrics and self.active:
            mlflow.log_metrics(metrics, step=step, synchronous=False, run_id=self.run_id)

    def log_config(self, cfg: DictConfig, text: str | None = None) -> None:
        """The run's config as params (flattened) and as the artifact ``config.yaml`` (``text`` if the
        caller rendered it already), redacted."""
        self.log_params(params_of(cfg))
        self.log_text(text if text is not None else config_yaml(cfg), CONFIG_FILE)

    def log_text(self, text: str, artifact_file: str) -> None:
        if self.active:
            mlflow.log_text(text, artifact_file, run_id=self.run_id)

    def log_artifact(self, path: Path) -> None:
        if self.active:
            mlflow.log_artifact(str(path), run_id=self.run_id)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self.active:
            return
        with signals_held():
            try:
                mlflow.flush_async_logging()
            finally:
                if exc is None:
                    mlflow.end_run(status="FINISHED")
                else:
                    # An exception may say how the run ended (a pruned sweep trial: KILLED, tag "pruned").
                    default = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
                    reason = f"{exc_type.__name__}: {exc}"[:5000]
                    mlflow.set_tag(getattr(exc, "mlflow_tag", TAG_ERROR), reason)
                    mlflow.end_run(status=getattr(exc, "mlflow_status", default))


@contextlib.contextmanager
def signals_held(signums: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> Iterator[None]:
    """Hold ``signums`` while the body runs, then deliver them to the handlers as they were.

    A run's ending must not be cut short: when a rank of a multi-process run fails, the launcher's
    SIGTERM reaches the other ranks while they end their runs, and a handler that raises there
    (``launch.fail_on_sigterm``) would leave the run open, for MLflow's exit hook to end FINISHED.
    Only the main thread may set handlers; elsewhere the body runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    before = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in signums}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(caught):
            signal.raise_signal(s)


def fail_left_running(cfg: TrackingConfig, output_dir: str, reason: str) -> list[str]:
    """End as FAILED, with ``reason``, the runs of ``output_dir`` still RUNNING (a run whose process was
    killed before it could end its run: a rank of a multi-process run). Their ids."""
    client = mlflow.MlflowClient(cfg.uri)
    experiment = client.get_experiment_by_name(cfg.experiment)
    if experiment is None:
        return []
    where = f"tags.{TAG_OUTPUT_DIR} = '{output_dir}' and attributes.status = 'RUNNING'"
    ended = []
    for run in client.search_runs([experiment.experiment_id], where):
        client.set_tag(run.info.run_id, TAG_ERROR, reason)
        client.set_terminated(run.info.run_id, status="FAILED")
        ended.append(run.info.run_id)
    return ended


class StepMetrics(TrainerCallback):
    """Buffers the trainer's per-step log records and sends them to MLflow in asynchronous batches.

    One batch every ``flush_every_s`` seconds rather than one call per step: even asynchronous,
    each call costs the training process time (serialising, a store transaction per call).
    """

    def __init__(self, run: TrackedRun, flush_every_s: float):
        self.run, self.flush_every_s = run, flush_every_s
        self.buffer: list[Metric] = []
        self.last_flush = time.monotonic()

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any):
        now = int(time.time() * 1000)
        self.buffer += [Metric(k, v, now, state.global_step) for k, v in numeric(logs or {}).items()]
        if time.monotonic() - self.last_flush >= self.flush_every_s:
            self.flush()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any):
        self.flush()

    def flush(self) -> None:
        for i in range(0, len(self.buffer), MAX_METRICS_PER_BATCH):
            chunk = self.buffer[i : i + MAX_METRICS_PER_BATCH]
            mlflow.MlflowClient().log_batch(self.run.run_id, metrics=chunk, synchronous=False)
        self.buffer, self.last_flush = [], time.monotonic()


def samples_jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in rows)
