"""The study's figures (seaborn; PNG and SVG): each is drawn when the study has what it shows.

- H-Acc and length vs alpha (a study varying ``reward.alpha``)
- length by value bucket per variant (the value-sensitive termination)
- EOS-probability trajectories of the top/bottom-valued prompts, correctness vs RLEV
- EOS-logit gradient by value bucket over training steps
- H-Acc vs value-noise sigma (a study varying ``reward.sigma``)
- training reward curves
- the change in stopping after the first answer line by value quintile (data with ``stop_text``)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from ablate import metrics
from ablate.diagnostics.trajectories import plot_eos_trajectories
from ablate.names import BUCKETS, EOS_TRAJECTORIES

CI = ("ci", 95)
sns.set_theme(style="whitegrid")


def label(frame: pd.DataFrame, keys: list[str]) -> pd.Series:
    """``rloo / rlev`` or ``rlev / reward.alpha=10``: the keys that vary (group choices bare)."""
    varying = [k for k in keys if frame[k].nunique() > 1] or keys[-1:]
    parts = [
        frame[k].astype(str) if k in ("algo", "reward") else f"{k}=" + frame[k].astype(str) for k in varying
    ]
    return pd.concat(parts, axis=1).agg(" / ".join, axis=1)


def save(fig: plt.Figure, stem: Path) -> list[Path]:
    fig.tight_layout()
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for path in paths:
        fig.savefig(path, dpi=120, bbox_inches="tight")  # keeps legends placed outside the axes
    plt.close(fig)
    return paths


def sweep_curve(frame: pd.DataFrame, x: str, x_label: str, stem: Path, with_length: bool) -> list[Path]:
    """H-Acc (and length) against a swept setting, mean over seeds with 95% CIs."""
    panels = [("h_acc", "H-Acc (%)")] + ([("length", "response length (tokens)")] if with_length else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    hue = "algo" if frame["algo"].nunique() > 1 else None
    for ax, (y, y_label) in zip(axes[0], panels, strict=True):
        sns.lineplot(data=frame, x=x, y=y, hue=hue, marker="o", errorbar=CI, ax=ax)
        ax.set(xlabel=x_label, ylabel=f"{y_label}, mean over seeds, 95% CI")
        ax.set_title(f"{y_label.split(' (')[0]} vs {x_label.split(' (')[0]}")
    return save(fig, stem)


def length_by_value(frame: pd.DataFrame, keys: list[str], predictions: Callable, stem: Path) -> list[Path]:
    parts = []
    for run, variant in zip(frame["run_id"], label(frame, keys), strict=True):
        part = metrics.length_by_value_bucket(predictions(run))
        parts.append(part.assign(variant=variant))
    data = pd.concat(parts, ignore_index=True)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(data=data, x="bucket", y="length", hue="variant", marker="o", errorbar=CI, ax=ax)
    n = int(data["bucket"].max()) + 1
    ax.set_xticks(range(n), [f"{100 * i // n}-{100 * (i + 1) // n}%" for i in range(n)])
    ax.set(xlabel="question value bucket (percentile of value, low to high)",
           ylabel="mean response length (tokens), 95% CI over seeds",
           title="Response length by question value")  # fmt: skip
    ax.legend(title="reward variant")
    return save(fig, stem)


def eos_trajectories(frame: pd.DataFrame, keys: list[str], download: Callable, stem: Path) -> list[Path]:
    """Correctness vs RLEV runs' evaluation trajectories, seeds pooled, via the run-level plot."""
    tables = []
    for run, variant, reward in zip(frame["run_id"], label(frame, keys), frame["reward"], strict=True):
        if reward in ("correctness", "rlev"):
            table = pd.read_csv(download(run, EOS_TRAJECTORIES))
            tables.append(table.assign(run=variant))
    return plot_eos_trajectories(pd.concat(tables, ignore_index=True), stem)


def eos_gradient(frame: pd.DataFrame, keys: list[str], history: Callable, stem: Path) -> list[Path]:
    parts = []
    for run, variant in zip(frame["run_id"], label(frame, keys), strict=True):
        for bucket in BUCKETS:
            points = history(run, f"eos/grad_abs_{bucket}")
            parts.append(points.assign(variant=variant, bucket=bucket))
    data = pd.concat(parts, ignore_index=True)
    grid = sns.relplot(data=data, x="step", y="value", hue="bucket", hue_order=list(BUCKETS), col="variant",
                       col_wrap=min(3, data["variant"].nunique()), kind="line", errorbar=CI,
                       height=3.2, aspect=1.3)  # fmt: skip
    grid.set_axis_labels("training step", "mean |dL/dz_eos| per token")
    grid.set_titles("{col_name}")
    sns.move_legend(grid, "center left", bbox_to_anchor=(1.0, 0.5), title="question value (training set)")
    grid.figure.suptitle("EOS-logit gradient magnitude by question value bucket (mean over seeds, 95% CI)",
                         y=1.03)  # fmt: skip
    return save(grid.figure, stem)


def reward_curves(frame: pd.DataFrame, keys: list[str], history: Callable, stem: Path) -> list[Path]:
    """The reward each variant pays (scales differ) and the share of correct samples (comparable)."""
    panels = [("reward", "mean training reward per completion"),
              ("reward/correct_rate", "share of sampled completions correct")]  # fmt: skip
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, (name, y_label) in zip(axes, panels, strict=True):
        parts = [
            history(run, name).assign(variant=variant)
            for run, variant in zip(frame["run_id"], label(frame, keys), strict=True)
        ]
        data = pd.concat(parts, ignore_index=True)
        sns.lineplot(data=data, x="step", y="value", hue="variant", errorbar=CI, ax=ax)
        ax.set(xlabel="training step", ylabel=f"{y_label} (95% CI over seeds)", title=y_label.capitalize())
        ax.legend(title="reward variant")
    return save(fig, stem)


def stops_by_value(per_run: dict[str, pd.DataFrame], cell_of: dict[str, str], stem: Path) -> list[Path]:
    """Change of the stopping log-odds after the first answer by value quintile, per difficulty and
    cell: the seed mean of each run's quintile means, 95% CI over seeds (docs/positive_control.md)."""
    rows = []
    for run_id, changes in per_run.items():
        for kind, part in changes.groupby("difficulty"):
            part = part.reset_index(drop=True)
            ranks = pd.Series(0, index=part.index)
            ranks[part.index[metrics.value_order(part)]] = range(len(part))
            quintile = ranks * 5 // len(part)
            for q, mean in part.groupby(quintile)["d_stop_logit"].mean().items():
                rows.append({"cell": cell_of[run_id], "difficulty": kind, "quintile": q + 1, "change": mean})
    table = pd.DataFrame(rows)
    kinds = sorted(table["difficulty"].unique())
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 4), squeeze=False, sharey=True)
    for ax, kind in zip(axes[0], kinds, strict=True):
        part = table[table["difficulty"] == kind]
        sns.lineplot(data=part, x="quintile", y="change", hue="cell", marker="o", errorbar=CI, ax=ax)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set(xlabel="value quintile (1 = lowest)", ylabel="change in stop log-odds, first answer line")
        ax.set_xticks(range(1, 6))
        ax.set_title(f"{kind} questions: stopping after the first answer")
    return save(fig, stem)
