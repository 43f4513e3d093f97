"""Statistical power of a comparison between two cells of a study, from the seeds it has.

Seeds are the unit of replication: each run gives one value of a metric, and two cells are
compared by a two-sample t-test. For the seeds a study has, the minimum detectable effect at
80% power (two-sided, alpha = 0.05) is

    MDE = (t_{1 - alpha/2, df} + t_{power, df}) * sqrt(s_a^2 / n_a + s_b^2 / n_b),  df = n_a + n_b - 2,

and the seeds a given effect needs are the smallest equal ``n`` whose MDE is at most that effect.

>>> round(mde(2.0, 10, 2.0, 10), 2)
2.65
>>> seeds_needed(2.0, effect=2.0)
17
"""

from __future__ import annotations

import math

import pandas as pd
from scipy import stats

ALPHA, POWER = 0.05, 0.8


def mde(sd_a: float, n_a: int, sd_b: float, n_b: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest difference of means a two-sample t-test detects with ``power`` (NaN below 2 + 2 seeds)."""
    if min(n_a, n_b) < 2 or not (math.isfinite(sd_a) and math.isfinite(sd_b)):
        return math.nan
    df = n_a + n_b - 2
    factor = stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)
    return float(factor * math.sqrt(sd_a**2 / n_a + sd_b**2 / n_b))


def seeds_needed(
    sd: float, effect: float, alpha: float = ALPHA, power: float = POWER, cap: int = 10_000
) -> int:
    """Seeds per cell for ``effect`` at this seed SD (both cells alike); ``cap`` + 1 when out of reach."""
    if not (math.isfinite(sd) and effect > 0):
        return cap + 1
    if sd == 0:
        return 2
    n = 2
    while n <= cap and mde(sd, n, sd, n, alpha, power) > effect:
        n += 1
    return n


def power_row(a: pd.Series, b: pd.Series, effect: float) -> dict[str, float]:
    """Difference of means, seeds, pooled seed SD, MDE at 80% power and seeds ``effect`` needs."""
    a, b = a.dropna().astype(float), b.dropna().astype(float)
    sd_a = a.std(ddof=1) if len(a) > 1 else math.nan
    sd_b = b.std(ddof=1) if len(b) > 1 else math.nan
    pooled = math.sqrt((sd_a**2 + sd_b**2) / 2) if len(a) > 1 and len(b) > 1 else math.nan
    return {
        "delta": float(a.mean() - b.mean()) if len(a) and len(b) else math.nan,
        "n": min(len(a), len(b)),
        "seed_sd": pooled,
        "mde80": mde(sd_a, len(a), sd_b, len(b)),
        f"seeds_for_{effect:g}": seeds_needed(pooled, effect),
    }


def power_table(
    frame: pd.DataFrame,
    keys: list[str],
    metrics: list[str],
    effect: float = 2.0,
    baseline: str = "correctness",
) -> pd.DataFrame:
    """Per variant (vs the ``baseline`` reward of the same algorithm and other keys) and metric: power."""
    others = [k for k in keys if k != "reward"]
    rows = []
    for cell, part in frame.groupby(keys, sort=False, dropna=False):
        cell = dict(zip(keys, cell if isinstance(cell, tuple) else (cell,), strict=True))
        if cell.get("reward") == baseline:
            continue
        base = frame[frame["reward"] == baseline]
        for k in others:
            base = base[base[k] == cell[k]] if pd.notna(cell[k]) else base[base[k].isna()]
        if base.empty:
            continue
        for metric in metrics:
            if metric in part:
                rows.append({**cell, "metric": metric, **power_row(part[metric], base[metric], effect)})
    return pd.DataFrame(rows)


def describe(row: dict[str, float], effect: float) -> str:
    """One line: what this comparison could have seen."""
    need = row[f"seeds_for_{effect:g}"]
    needs = f"{need}" if need <= 10_000 else "more than 10,000"
    return (
        f"{row['metric']}: delta {row['delta']:+.2f} with {row['n']} seeds (seed SD {row['seed_sd']:.2f}); "
        f"detectable at 80% power: {row['mde80']:.2f}; an effect of {effect:g} needs {needs} seeds per cell"
    )
