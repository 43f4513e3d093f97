"""The paper's table: rows algorithm x reward variant, each metric as mean +- 95% CI over seeds,
with the difference to the correctness baseline of the same algorithm and whether a paired
bootstrap over questions finds it significant.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd

from ablate.names import LABELS, METRICS
from ablate.report.stats import mean_ci, paired_bootstrap

BASELINE = "correctness"
ALPHA = 0.05  # a delta is marked significant when its paired-bootstrap p-value is below this


def paper_table(
    frame: pd.DataFrame,
    keys: list[str],
    predictions: Callable[[str], pd.DataFrame] | None = None,
    n_boot: int = 2000,
) -> pd.DataFrame:
    """One row per variant (``keys``), columns ``n``, ``<metric>``, ``<metric>_ci``, ``<metric>_delta``,
    ``<metric>_p``. ``predictions(run_id)`` gives a run's predictions table for the paired test
    (without it, or without a baseline, deltas have no p-value)."""
    done = frame[frame["status"] == "FINISHED"]
    rows = []
    for variant, runs in done.groupby(keys, sort=False, dropna=False):
        variant = variant if isinstance(variant, tuple) else (variant,)
        row = dict(zip(keys, variant, strict=True)) | {"n": len(runs)}
        for name in METRICS:
            row[name], row[f"{name}_ci"] = mean_ci(runs[name])
        rows.append((row, runs))
    table_rows = []
    for row, runs in rows:
        base = _baseline_runs(done, row, keys)
        if base is not None and row["reward"] != BASELINE:
            p = _p_values(runs, base, predictions, n_boot) if predictions else {}
            for name in METRICS:
                row[f"{name}_delta"] = row[name] - base[name].mean()
                row[f"{name}_p"] = p.get(name, math.nan)
        table_rows.append(row)
    return pd.DataFrame(table_rows)


def _baseline_runs(done: pd.DataFrame, row: dict, keys: list[str]) -> pd.DataFrame | None:
    """The correctness runs with the same algorithm and non-reward settings."""
    match = done["reward"] == BASELINE
    for key in keys:
        if key != "reward" and not key.startswith("reward."):
            match &= done[key] == row[key]
    base = done[match]
    return None if base.empty else base


def _p_values(runs: pd.DataFrame, base: pd.DataFrame, predictions, n_boot: int) -> dict[str, float]:
    seeds = sorted(set(runs["seed"]) & set(base["seed"]))
    if not seeds:
        return {}
    pick = lambda df: [predictions(df[df["seed"] == s]["run_id"].iloc[0]) for s in seeds]  # noqa: E731
    return paired_bootstrap(pick(runs), pick(base), n_boot=n_boot)


def display_table(table: pd.DataFrame, keys: list[str], digits: int = 1) -> pd.DataFrame:
    """Cells as ``57.0 ± 1.2`` with ``(+1.7*)`` deltas (``*``: p < 0.05), for Markdown and LaTeX."""
    out = table[[*keys, "n"]].copy()
    for name in METRICS:
        d = 2 if name == "value_density" else digits
        cells = []
        for _, row in table.iterrows():
            text = f"{row[name]:.{d}f}"
            if not math.isnan(row[f"{name}_ci"]):
                text += f" ± {row[f'{name}_ci']:.{d}f}"
            delta = row.get(f"{name}_delta", math.nan)
            if isinstance(delta, float) and not math.isnan(delta):
                star = "*" if row.get(f"{name}_p", math.nan) < ALPHA else ""
                text += f" ({delta:+.{d}f}{star})"
            cells.append(text)
        out[LABELS[name]] = cells
    return out


def to_markdown(table: pd.DataFrame, keys: list[str]) -> str:
    note = "\n\nmean ± 95% CI over seeds (n)"
    if any(c.endswith("_delta") for c in table.columns):  # a study without a correctness row has none
        note += f"; (delta vs correctness, same algorithm; * = paired bootstrap over questions, p < {ALPHA})"
    return display_table(table, keys).to_markdown(index=False) + note


def to_latex(table: pd.DataFrame, keys: list[str]) -> str:
    latex = display_table(table, keys).to_latex(index=False, escape=True)  # escapes _, %, &
    return latex.replace("±", r"$\pm$")
