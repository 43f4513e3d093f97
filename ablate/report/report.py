"""A study's report, for the CLI and notebooks alike.

>>> rep = Report.load("quickstart", tracking_uri="sqlite:///mlflow.db")   # doctest: +SKIP
>>> rep.frame  # doctest: +SKIP
>>> print(rep.markdown())  # doctest: +SKIP
>>> rep.dynamics  # doctest: +SKIP
>>> rep.write()  # doctest: +SKIP

``rep.frame`` has one row per trial run (config columns and metrics); ``rep.markdown()`` is the
paper's table (mean +- 95% CI, deltas, significance); ``rep.dynamics`` gives per variant s/step,
generated tok/s and how far RL moved the policy; ``rep.write()`` writes table.{md,csv,tex},
runs.csv, dynamics.{md,csv} and the figures into ``rep.out_dir``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient

from ablate.evaluate import read_predictions
from ablate.names import BUCKETS, EOS_TRAJECTORIES, METRICS, PREDICTIONS_START, STOPS_FILE, eos_key
from ablate.report import dynamics, figures, paired, power
from ablate.report.runs import StudyRuns
from ablate.report.table import BASELINE, paper_table, to_latex, to_markdown

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per downloaded file


@dataclass
class Report:
    runs: StudyRuns  # the study's parent and trial runs in MLflow
    out_dir: Path  # where tables, figures and downloaded artifacts go
    n_boot: int = 2000  # paired-bootstrap resamples per comparison
    effect: float = 2.0  # the effect (in a metric's units) the power table gives the seeds needed for
    baseline: str = BASELINE  # the reward variant the power table and the paired analysis compare with
    _cache: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    @classmethod
    def load(
        cls,
        study: str,
        tracking_uri: str = "sqlite:///mlflow.db",
        experiment: str = "ablate",
        out_dir: str | Path | None = None,
        n_boot: int = 2000,
        effect: float = 2.0,
        baseline: str = BASELINE,
    ) -> Report:
        out = Path(out_dir or f"reports/{study}")
        out.mkdir(parents=True, exist_ok=True)
        return cls(StudyRuns(study, tracking_uri, experiment), out, n_boot, effect, baseline)

    @cached_property
    def frame(self) -> pd.DataFrame:
        return self.runs.frame()

    @cached_property
    def finished(self) -> pd.DataFrame:
        return self.frame[self.frame["status"] == "FINISHED"].reset_index(drop=True)

    @property
    def keys(self) -> list[str]:
        return self.runs.variant_keys(self.frame)

    def predictions(self, run_id: str) -> pd.DataFrame:
        if run_id not in self._cache:
            self._cache[run_id] = self.runs.predictions(run_id, self.out_dir / "artifacts")
        return self._cache[run_id]

    def download(self, run_id: str, path: str) -> Path:
        local = self.out_dir / "artifacts" / run_id / path
        return local if local.exists() else self.runs.artifact(run_id, path, local.parent)

    @cached_property
    def table(self) -> pd.DataFrame:
        return paper_table(self.frame, self.keys, self.predictions, self.n_boot)

    @cached_property
    def dynamics(self) -> pd.DataFrame:
        """Speed and how far RL moved the policy, per variant (``ablate.report.dynamics``)."""
        batch = self.runs.raw.set_index("run_id")["params.batch_size"].astype(int)
        return dynamics.dynamics_table(self.frame, self.keys, self.runs.history, batch.get)

    @cached_property
    def power(self) -> pd.DataFrame:
        """Per variant vs correctness and metric: seeds, seed SD, MDE at 80% power, seeds for ``effect``."""
        return power.power_table(self.finished, self.keys, METRICS, self.effect, self.baseline)

    @cached_property
    def paired(self) -> pd.DataFrame:
        """Question-by-question changes from the starting policy against value (``ablate.report.paired``),
        for studies whose runs evaluated their starting policy (``diagnostics.start``); else empty."""
        df = self.finished
        if df.empty or not self._has_artifact(df, PREDICTIONS_START):
            return pd.DataFrame()
        others = [k for k in self.keys if k != "reward"]
        tables = []
        for _, group in df.groupby(others, sort=False, dropna=False) if others else [(None, df)]:
            if not (group["reward"] == self.baseline).any():
                continue
            table = paired.paired_table(
                group, lambda row: row["reward"], self.changes, self.baseline, self.n_boot
            )
            context = group.iloc[0][others].to_dict() if others else {}
            tables.append(table.assign(**context))
        out = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
        if not out.empty:
            base_sd = out[out["cell"] == self.baseline].set_index(
                [*others, "outcome", "stratum", "regressor", "statistic"]
            )
            out["mde80"] = [self._mde(row, base_sd, others) for _, row in out.iterrows()]
        return out

    def _mde(self, row: pd.Series, base: pd.DataFrame, others: list[str]) -> float:
        key = (*[row[k] for k in others], row["outcome"], row["stratum"], row["regressor"], row["statistic"])
        if row["cell"] == self.baseline or key not in base.index:
            return float("nan")
        b = base.loc[key]
        return power.mde(row["seed_sd"], row["n"], b["seed_sd"], b["n"])

    def changes(self, run_id: str) -> pd.DataFrame:
        """One run's per-question changes from its starting policy (``ablate.report.paired.changes``)."""
        key = f"changes:{run_id}"
        if key not in self._cache:
            start = read_predictions(self.download(run_id, PREDICTIONS_START))
            stops = None
            if self._has_artifact(self.finished[self.finished["run_id"] == run_id], STOPS_FILE):
                stops = pd.read_csv(self.download(run_id, STOPS_FILE))
            self._cache[key] = paired.changes(start, self.predictions(run_id), stops)
        return self._cache[key]

    def markdown(self) -> str:
        return to_markdown(self.table, self.keys)

    def latex(self) -> str:
        return to_latex(self.table, self.keys)

    def figures(self) -> dict[str, list[Path]]:
        """Every figure the study has data for, as PNG and SVG files in ``out_dir``."""
        df, keys, out = self.finished, self.keys, self.out_dir
        drawn: dict[str, list[Path]] = {}
        if df.empty:
            return drawn
        swept = {
            "alpha": ("reward.alpha", "alpha (RLEV scale slope)", True),
            "noise": ("reward.sigma", "value noise sigma (absolute, on v)", False),
        }
        for name, (key, x_label, with_length) in swept.items():
            if key in df and df[key].nunique() > 1:
                drawn[name] = figures.sweep_curve(df, key, x_label, out / name, with_length)
        stem = out / "length_by_value"
        drawn["length_by_value"] = figures.length_by_value(df, keys, self.predictions, stem)
        has_eos = self._has_artifact(df, EOS_TRAJECTORIES)
        if has_eos and df["reward"].isin(["correctness", "rlev"]).any():
            stem = out / "eos_trajectories"
            drawn["eos_trajectories"] = figures.eos_trajectories(df, keys, self.download, stem)
        if self._has_metric(eos_key("grad_abs", BUCKETS[-1])):
            drawn["eos_gradient"] = figures.eos_gradient(df, keys, self.runs.history, out / "eos_gradient")
        drawn["reward_curves"] = figures.reward_curves(df, keys, self.runs.history, out / "reward_curves")
        if not self.paired.empty and "d_stop_logit" in set(self.paired["outcome"]):
            per_run = {run_id: self.changes(run_id) for run_id in df["run_id"]}
            cells = dict(zip(df["run_id"], figures.label(df, keys), strict=True))
            drawn["stops_by_value"] = figures.stops_by_value(per_run, cells, out / "stops_by_value")
        return drawn

    def _has_artifact(self, df: pd.DataFrame, path: str) -> bool:
        listed = self.runs.client.list_artifacts(df["run_id"].iloc[0])
        return any(a.path == path for a in listed)

    def _has_metric(self, name: str) -> bool:
        return f"metrics.{name}" in self.runs.raw and self.runs.raw[f"metrics.{name}"].notna().any()

    def write(self, log: bool = True) -> list[Path]:
        """Tables (Markdown, CSV, LaTeX), the runs frame and the figures; logged on the study's run."""
        out = self.out_dir
        (out / "table.md").write_text(self.markdown() + "\n")
        (out / "table.tex").write_text(self.latex())
        self.table.to_csv(out / "table.csv", index=False)
        self.frame.to_csv(out / "runs.csv", index=False)
        (out / "dynamics.md").write_text(dynamics.to_markdown(self.dynamics, self.keys) + "\n")
        self.dynamics.to_csv(out / "dynamics.csv", index=False)
        self.power.to_csv(out / "power.csv", index=False)
        names = ["table.md", "table.tex", "table.csv", "runs.csv", "dynamics.md", "dynamics.csv", "power.csv"]
        if not self.paired.empty:
            self.paired.to_csv(out / "paired.csv", index=False)
            (out / "paired.md").write_text(paired.to_markdown(self.paired, self.baseline) + "\n")
            names += ["paired.csv", "paired.md"]
        paths = [out / name for name in names]
        paths += [p for drawn in self.figures().values() for p in drawn]
        if log:
            client = MlflowClient(self.runs.tracking_uri)
            for path in paths:
                client.log_artifact(self.runs.parent_run_id, str(path), "report")
        return paths
