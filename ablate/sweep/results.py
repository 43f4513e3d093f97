"""A study's result table from its Optuna trials: one row per variant, seeds averaged.

Each COMPLETE trial carries its final eval metrics in its user attributes (``metrics``), so
the table needs only the study's storage. ``ablate report`` (confidence intervals, paired
tests) builds on the MLflow runs; this is the quick look printed at the end of a sweep.
"""

from __future__ import annotations

import math
import re
import time

import optuna
import pandas as pd
from mlflow.entities import Metric
from omegaconf import DictConfig
from optuna.trial import FrozenTrial, TrialState

from ablate.names import ATTR_DUPLICATE_OF, ATTR_ERROR, ATTR_METRICS, ATTR_RUN_ID, COUNT, LABELS, METRICS
from ablate.sweep.storage import DONE
from ablate.sweep.study import cell_key, grid_cells, short_name


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per COMPLETE trial: its number, parameters, metrics and MLflow run id."""
    rows = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        metrics = trial.user_attrs.get(ATTR_METRICS, {})
        rows.append(
            {
                "trial": trial.number,
                **trial.params,
                **{k: metrics.get(k, float("nan")) for k in METRICS},
                "mlflow_run_id": trial.user_attrs.get(ATTR_RUN_ID),
            }
        )
    return pd.DataFrame(rows)


def results_table(study: optuna.Study, grid: bool, objective: str = "h_acc") -> pd.DataFrame:
    """Grid: rows = parameter combinations without ``seed``, metrics averaged over seeds (``n``).

    A search: one row per trial, best first by the first objective.
    """
    frame = trials_frame(study)
    if frame.empty:
        return frame
    params = [c for c in frame.columns if c not in ("trial", "mlflow_run_id", *METRICS)]
    if not grid:
        ascending = study.directions[0] == optuna.study.StudyDirection.MINIMIZE
        table = frame.drop(columns="mlflow_run_id").sort_values(objective, ascending=ascending)
        return table.rename(columns=LABELS).reset_index(drop=True)
    keys = [p for p in params if p != "seed"] or params
    grouped = frame.groupby(keys, sort=False, dropna=False)
    table = grouped[list(METRICS)].mean()
    table.insert(0, "n", grouped.size())
    return table.rename(columns=LABELS).reset_index()


def summary_metrics(table: pd.DataFrame, grid: bool = True) -> list[Metric]:
    """The result table as metrics of the study's run: ``h_acc/rlev a:10`` per variant (a grid), or
    the best trial's ``best/h_acc`` (a search; its table is sorted best first). MLflow metric names
    take no ``=``, so a variant's ``a=10`` reads ``a:10``."""
    metric_of = {v: k for k, v in LABELS.items()}
    params = [c for c in table.columns if c not in metric_of and c not in (COUNT, "trial")]
    rows = table.to_dict("records") if grid else table.head(1).to_dict("records")
    out, now = [], int(time.time() * 1000)
    for row in rows:
        cell = {k: row[k] for k in params if not (isinstance(row[k], float) and math.isnan(row[k]))}
        variant = short_name(cell).replace("=", ":") if grid else "best"
        variant = re.sub(r"[^\w\-. :/]", "_", variant) or "all"
        for name, key in metric_of.items():
            if name in row and math.isfinite(row[name]):
                out.append(Metric(f"{key}/{variant}", float(row[name]), now, 0))
    return out


def format_table(table: pd.DataFrame) -> str:
    if table.empty:
        return "(no completed trials)"
    return table.to_string(index=False, float_format=lambda x: f"{x:.2f}")


def describe(trial: FrozenTrial) -> str:
    params = " ".join(f"{k}={v}" for k, v in trial.params.items())
    line = f"trial {trial.number} {trial.state.name:8s} {params}"
    if trial.state == TrialState.COMPLETE:
        metrics = trial.user_attrs.get(ATTR_METRICS, {})
        line += "  " + " ".join(f"{k}={metrics[k]:.2f}" for k in ("acc", "h_acc", "length") if k in metrics)
    elif ATTR_ERROR in trial.user_attrs:
        line += f"  {trial.user_attrs[ATTR_ERROR][:300]}"
    elif ATTR_DUPLICATE_OF in trial.user_attrs:
        line += f"  (cell already held by trial {trial.user_attrs[ATTR_DUPLICATE_OF]})"
    return line


def complete(cfg: DictConfig, trials: list[FrozenTrial]) -> bool:
    """Every grid cell has a COMPLETE or PRUNED trial; a search has ``n_trials`` of them."""
    if cfg.grid:
        held = {cell_key(t.params) for t in trials if t.state in DONE}
        return {cell_key(c) for c in grid_cells(cfg)} <= held
    return sum(t.state in DONE for t in trials) >= cfg.n_trials
