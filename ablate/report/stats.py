"""Confidence intervals over seeds and a paired bootstrap over questions.

A variant and its baseline are evaluated on the same test questions, seed by seed, so their
difference is best judged question by question: resample the questions (the same resample
for every seed), recompute each metric for both, and take the seed-averaged difference. The
share of resamples on the other side of zero gives a two-sided p-value.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from ablate.metrics import credit, top_bottom


def mean_ci(values: pd.Series, level: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its Student-t interval (NaN with fewer than 2 values)."""
    values = values.dropna()
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    if n < 2:
        return float(values.mean()), math.nan
    half = stats.t.ppf(0.5 + level / 2, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return float(values.mean()), float(half)


def _question_arrays(predictions: pd.DataFrame) -> dict[str, np.ndarray]:
    df = predictions.sort_values("id").reset_index(drop=True)
    top, bottom = top_bottom(df)
    return {
        "id": df["id"].to_numpy(),
        "value": df["value"].to_numpy(float),
        "correct": credit(df).to_numpy(float),  # the credit where a partial verifier gave one
        "length": df["length"].to_numpy(float),
        "top": df["id"].isin(top["id"]).to_numpy(float),
        "bottom": df["id"].isin(bottom["id"]).to_numpy(float),
    }


def _metrics_on(q: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric of ``ablate.metrics.summary`` on each row of resampled question indices."""
    value, correct, length = q["value"][idx], q["correct"][idx], q["length"][idx]
    with np.errstate(invalid="ignore", divide="ignore"):
        h_acc = 100 * (value * correct).sum(1) / value.sum(1)
        mean_length = length.mean(1)
        return {
            "acc": 100 * correct.mean(1),
            "h_acc": h_acc,
            "length": mean_length,
            "value_density": h_acc / mean_length,
            "acc_top20": 100 * (correct * q["top"][idx]).sum(1) / q["top"][idx].sum(1),
            "acc_bottom20": 100 * (correct * q["bottom"][idx]).sum(1) / q["bottom"][idx].sum(1),
            "length_gap": (length * q["top"][idx]).sum(1) / q["top"][idx].sum(1)
            - (length * q["bottom"][idx]).sum(1) / q["bottom"][idx].sum(1),
        }


def paired_bootstrap(
    variant: list[pd.DataFrame], baseline: list[pd.DataFrame], n_boot: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Two-sided p-value per metric that ``variant - baseline`` (seed-paired lists) differs from 0."""
    if not variant or len(variant) != len(baseline):
        raise ValueError("paired_bootstrap needs one baseline predictions table per variant table")
    pairs = [(_question_arrays(v), _question_arrays(b)) for v, b in zip(variant, baseline, strict=True)]
    ids = pairs[0][0]["id"]
    for v, b in pairs:
        if not (np.array_equal(v["id"], ids) and np.array_equal(b["id"], ids)):
            raise ValueError("paired_bootstrap: the runs were not evaluated on the same questions")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(ids), size=(n_boot, len(ids)))
    deltas: dict[str, np.ndarray] = {}
    for v, b in pairs:
        mv, mb = _metrics_on(v, idx), _metrics_on(b, idx)
        for name in mv:
            deltas[name] = deltas.get(name, 0) + (mv[name] - mb[name]) / len(pairs)
    out = {}
    for name, d in deltas.items():
        d = d[np.isfinite(d)]
        out[name] = float(min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean()))) if len(d) else math.nan
    return out
