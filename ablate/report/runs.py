"""A study's runs from MLflow as one tidy DataFrame: one row per trial run, config and metrics.

``ablate sweep`` tags every trial run ``ablate.study=<name>`` and nests it under the study's
parent run (``ablate.role=study``), whose ``study.grid`` / ``study.space`` params say which
config keys vary; those keys become columns, beside ``algo``, ``reward``, ``seed`` and the
final eval metrics.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient

from ablate.evaluate import read_predictions
from ablate.names import (
    METRICS,
    PARAM_GRID,
    PARAM_SPACE,
    PREDICTIONS,
    ROLE_STUDY,
    TAG_PARENT,
    TAG_ROLE,
    TAG_STUDY,
    TAG_TRIAL_NUMBER,
    eval_key,
)


class StudyRuns:
    """The parent run and the trial runs of one study in one MLflow experiment."""

    def __init__(self, study: str, tracking_uri: str, experiment: str = "ablate"):
        self.study, self.tracking_uri = study, tracking_uri
        self.client = MlflowClient(tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            raise ValueError(f"no MLflow experiment {experiment!r} at {tracking_uri}")
        mlflow.set_tracking_uri(tracking_uri)
        runs = mlflow.search_runs(
            experiment_ids=[found.experiment_id],
            filter_string=f"tags.`{TAG_STUDY}` = '{study}'",
            output_format="pandas",
        )
        roles = runs.get(f"tags.{TAG_ROLE}", pd.Series(dtype=str))
        parents = runs[roles == ROLE_STUDY] if len(runs) else runs
        if parents.empty:
            raise ValueError(f"no study {study!r} in MLflow experiment {experiment!r} at {tracking_uri}")
        self.parent = parents.iloc[0]
        self.parent_run_id = self.parent["run_id"]
        self.raw = runs[runs[f"tags.{TAG_PARENT}"] == self.parent_run_id].reset_index(drop=True)
        grid = json.loads(self.parent.get(f"params.{PARAM_GRID}") or "{}")
        space = json.loads(self.parent.get(f"params.{PARAM_SPACE}") or "{}")
        self.varied = [*grid, *space]  # the config keys the study varies

    def frame(self) -> pd.DataFrame:
        """One row per trial run: run_id, trial, status, algo, reward, the varied keys, seed, metrics."""
        raw = self.raw
        out = pd.DataFrame(
            {
                "run_id": raw["run_id"],
                "trial": pd.to_numeric(raw[f"tags.{TAG_TRIAL_NUMBER}"]).astype(int),
                "status": raw["status"],
                "algo": raw["tags.algo"],
                "reward": raw["tags.reward"],
            }
        )
        for key in self.varied:
            if key in ("algo", "reward", "seed"):
                continue
            tag, param = f"tags.{key}", f"params.{key}"  # a config group is a tag, any other key a param
            column = raw[tag] if tag in raw else raw[param]
            out[key] = _numeric(column)
        out["seed"] = pd.to_numeric(raw["params.seed"]).astype(int)
        for name in METRICS:
            out[name] = raw[f"metrics.{eval_key(name)}"]
        return out.sort_values("trial").reset_index(drop=True)

    def variant_keys(self, frame: pd.DataFrame) -> list[str]:
        """What a row of the paper's table is: algorithm x reward x every other varied key but seed."""
        return ["algo", "reward", *[k for k in self.varied if k not in ("algo", "reward", "seed")]]

    def artifact(self, run_id: str, path: str, dst: Path) -> Path:
        dst.mkdir(parents=True, exist_ok=True)
        return Path(self.client.download_artifacts(run_id, path, str(dst)))

    def predictions(self, run_id: str, cache: Path) -> pd.DataFrame:
        """The run's greedy-evaluation predictions table (downloaded once into ``cache``)."""
        local = cache / run_id / PREDICTIONS
        if not local.exists():
            self.artifact(run_id, PREDICTIONS, cache / run_id)
        return read_predictions(local)

    def history(self, run_id: str, metric: str) -> pd.DataFrame:
        points = self.client.get_metric_history(run_id, metric)
        return pd.DataFrame({"step": [p.step for p in points], "value": [p.value for p in points]})


def _numeric(column: pd.Series) -> pd.Series:
    try:
        return pd.to_numeric(column)
    except (TypeError, ValueError):
        return column
