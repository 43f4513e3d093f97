"""The paper's evaluation metrics, in one place for training, sweeps and reports.

Input is a predictions table with one row per test question: ``value`` (v = points / exam
total), ``correct`` (bool) and ``length`` (generated tokens). A ``credit`` column (the fraction
of the question's points earned, ``verifier.partial=true``) replaces ``correct`` in every
accuracy: Acc is then the mean credit and H-Acc points earned over points available.

- Acc: percent correct.
- H-Acc: ``100 * sum(v over correct) / sum(v over all)``.
- length: mean response length in tokens.
- value density: H-Acc (percent) / mean length, e.g. 57.0 / 84.8 = 0.67.
- Acc on the top-20% and bottom-20% of questions by value.

Top/bottom 20% are exactly ``round(0.2 * n)`` questions (at least 1) by value. Ties in value
(common: many questions are worth the minimum points) are broken by a stable hash of the
question ``id``, so the sets do not depend on the order of the file; a table without ids keeps
its row order.

>>> import pandas as pd
>>> df = pd.DataFrame({"value": [0.1, 0.2, 0.3, 0.4], "correct": [1, 0, 1, 1], "length": [10, 20, 30, 40]})
>>> summary(df)["h_acc"]
80.0
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd

REQUIRED = ("value", "correct", "length")


def check_predictions(df: pd.DataFrame, source: str = "predictions") -> pd.DataFrame:
    """The table with ``correct`` as bool, or an error naming the missing columns or bad rows."""
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; a predictions table needs {list(REQUIRED)}")
    if df.empty:
        raise ValueError(f"{source}: no rows")
    df = df.copy()
    for col in ("value", "length"):
        numeric = pd.to_numeric(df[col], errors="coerce")
        bad = numeric.isna() | (numeric < 0)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(f"{source}: row {i + 1}: {col!r} must be a number >= 0, got {df[col].iloc[i]!r}")
        df[col] = numeric.astype(float)
    correct = df["correct"].map(_as_bool)
    if correct.isna().any():
        i = int(np.flatnonzero(correct.isna().to_numpy())[0])
        raise ValueError(
            f"{source}: row {i + 1}: 'correct' must be true/false or 1/0, got {df['correct'].iloc[i]!r}"
        )
    df["correct"] = correct.astype(bool)
    if "credit" in df:
        credit = pd.to_numeric(df["credit"], errors="coerce")
        bad = credit.isna() | (credit < 0) | (credit > 1)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(
                f"{source}: row {i + 1}: 'credit' must be a number in [0, 1], got {df['credit'].iloc[i]!r}"
            )
        df["credit"] = credit.astype(float)
    return df


def credit(df: pd.DataFrame) -> pd.Series:
    """Each question's credit: the ``credit`` column, else 1.0 for a correct answer and 0.0 otherwise."""
    return df["credit"] if "credit" in df else df["correct"].astype(float)


def _as_bool(x: object) -> bool | None:
    if isinstance(x, bool | np.bool_):
        return bool(x)
    if isinstance(x, int | float | np.integer | np.floating) and x in (0, 1):
        return bool(x)
    if isinstance(x, str) and x.strip().lower() in ("true", "false", "1", "0"):
        return x.strip().lower() in ("true", "1")
    return None


def h_acc(value: np.ndarray, credit: np.ndarray) -> float:
    """Human-aligned accuracy in percent (points earned / points available); NaN when all are worth 0.

    Sums are exactly rounded (``math.fsum``): numpy's SIMD summation order depends on the CPU, and
    a shipped report must give the same last digit on every machine.
    """
    total = math.fsum(np.asarray(value, dtype=float))
    earned = math.fsum(np.asarray(value, dtype=float) * np.asarray(credit, dtype=float))
    return float("nan") if total == 0 else 100.0 * earned / total


def value_order(df: pd.DataFrame) -> np.ndarray:
    """Row positions from the lowest to the highest value, ties ordered by a hash of the question id."""
    values = df["value"].to_numpy(dtype=float)
    if "id" not in df:
        return np.argsort(values, kind="stable")
    ties = np.array([hashlib.sha256(str(i).encode()).hexdigest() for i in df["id"]])
    return np.lexsort((ties, values))


def top_bottom(df: pd.DataFrame, share: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``share`` highest- and lowest-valued questions: equal, exact sizes (see the module docstring)."""
    k = max(1, round(share * len(df)))
    ordered = df.iloc[value_order(df)]
    return ordered.iloc[len(df) - k :], ordered.iloc[:k]


def value_buckets(df: pd.DataFrame, share: float = 0.2) -> pd.Series:
    """0 for the bottom ``share`` by value, 2 for the top, 1 otherwise: exact sets, indexed like ``df``."""
    top, bottom = top_bottom(df, share)
    out = pd.Series(1, index=df.index)
    out[bottom.index], out[top.index] = 0, 2
    return out


def summary(df: pd.DataFrame) -> dict[str, float]:
    """Acc, H-Acc, length, value density, top/bottom-20% Acc, the length gap between the top- and
    bottom-20% valued questions, and the row count."""
    df = check_predictions(df)
    df["credit"] = credit(df)
    value, earned = df["value"].to_numpy(), df["credit"].to_numpy()
    length = float(df["length"].mean())
    hacc = h_acc(value, earned)
    top, bottom = top_bottom(df)
    return {
        "acc": 100.0 * float(earned.mean()),
        "h_acc": hacc,
        "length": length,
        "value_density": hacc / length if length > 0 else float("nan"),
        "acc_top20": 100.0 * float(top["credit"].mean()),
        "acc_bottom20": 100.0 * float(bottom["credit"].mean()),
        # > 0: longer answers where more is at stake (the paper's Figure on length by value)
        "length_gap": float(top["length"].mean() - bottom["length"].mean()),
        "n": float(len(df)),
    }


def length_by_value_bucket(df: pd.DataFrame, buckets: int = 5) -> pd.DataFrame:
    """Mean length, Acc and value per value bucket (equal-count buckets by value rank, low to high)."""
    df = check_predictions(df)
    df["credit"] = credit(df)
    ranks = np.empty(len(df), dtype=int)
    ranks[value_order(df)] = np.arange(len(df))
    df["bucket"] = ranks * buckets // len(df)
    grouped = df.groupby("bucket")
    table = pd.DataFrame(
        {
            "value_min": grouped["value"].min(),
            "value_max": grouped["value"].max(),
            "value_mean": grouped["value"].mean(),
            "length": grouped["length"].mean(),
            "acc": 100.0 * grouped["credit"].mean(),
            "n": grouped.size(),
        }
    )
    table.index.name = "bucket"
    return table.reset_index()
