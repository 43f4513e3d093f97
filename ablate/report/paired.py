"""Question-by-question analysis: how far RL moved each test question, against its value.

A run with ``diagnostics.start`` evaluated its policy before and after training on the same
questions, so each question has a change: in length, in correctness and, with
``diagnostics.stops``, in the log-odds of stopping after its first answer line. Per run, three
statistics of a change: its mean over the questions; its least-squares slope on the question's
value scale ``s = 1 + min(10 v, 1)`` (the paper's alpha); and its mean on the top minus the bottom
20% by value (exact sets, ties broken by question id). Both are computed within each
difficulty stratum and over all questions; against the true value and, where a prompt showed
other points (``data.points=shuffled``), against the shown one.

A cell (a variant: its seeds) is compared with a baseline cell by the difference of the seed
means, with a 95% interval and a two-sided p-value from a bootstrap that resamples the seeds
within each cell and the questions (one resample of questions for every run).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from ablate.metrics import credit, value_buckets
from ablate.rewards.base import rlev_scale

OUTCOMES = {
    "d_stop_logit": "stop log-odds after the first answer",
    "d_length": "length",
    "d_correct": "correct",
}
STATISTICS = ("mean", "slope", "top_bottom")
ALPHA = 10.0  # the paper's alpha: the regressor is s = 1 + min(alpha * v, 1)


def changes(start: pd.DataFrame, end: pd.DataFrame, stops: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per test question: its value(s), difficulty and each outcome's change over training."""
    # credit: 1/0 for right/wrong, or the fraction of points a partial verifier gave
    end, start = end.assign(credit=credit(end)), start.assign(credit=credit(start))
    both = end[["id", "value", "length", "credit"]].merge(
        start[["id", "length", "credit"]], on="id", suffixes=("", "_start")
    )
    out = pd.DataFrame(
        {
            "id": both["id"],
            "value": both["value"].astype(float),
            "d_length": both["length"] - both["length_start"],
            "d_correct": both["credit"] - both["credit_start"],
        }
    )
    if stops is not None:
        first = stops[stops["line"] == 1].set_index("id")
        out["d_stop_logit"] = out["id"].map(first["stop_logit_end"] - first["stop_logit_start"])
        for column in ("shown_value", "difficulty"):
            if column in first:
                out[column] = out["id"].map(first[column])
    return out.sort_values("id").reset_index(drop=True)


def _statistic(
    x: np.ndarray, y: np.ndarray, weights: np.ndarray, top: np.ndarray, bottom: np.ndarray, name: str
):
    """The statistic under each row of question ``weights`` (resample counts): shape (rows,)."""
    if name == "mean":
        return weights @ y / weights.sum(1)
    if name == "slope":
        n = weights.sum(1)
        sx, sy = weights @ x, weights @ y
        sxx, sxy = weights @ (x * x), weights @ (x * y)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (sxy - sx * sy / n) / (sxx - sx * sx / n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ (y * top)) / (weights @ top) - (weights @ (y * bottom)) / (weights @ bottom)


def run_statistics(
    per_run: dict[str, pd.DataFrame], n_boot: int = 2000, seed: int = 0
) -> dict[tuple[str, str, str, str], np.ndarray]:
    """``(outcome, stratum, regressor, statistic) -> array (runs, 1 + n_boot)``: column 0 on all the
    questions, the others on resampled questions (the same resamples for every run)."""
    ids = next(iter(per_run.values()))["id"].to_numpy()
    for run, frame in per_run.items():
        if not np.array_equal(frame["id"].to_numpy(), ids):
            raise ValueError(f"run {run}: not evaluated on the same questions as the others")
    first = next(iter(per_run.values()))
    strata = {"all": np.ones(len(ids), bool)}
    if "difficulty" in first:
        strata |= {
            str(d): (first["difficulty"] == d).to_numpy()
            for d in sorted(first["difficulty"].dropna().unique())
        }
    regressors = {"true": "value"} | ({"shown": "shown_value"} if _shown_differs(first) else {})
    rng = np.random.default_rng(seed)
    out: dict[tuple[str, str, str, str], np.ndarray] = {}
    for stratum, mask in strata.items():
        n = int(mask.sum())
        counts = np.vstack([np.ones(n), rng.multinomial(n, np.full(n, 1 / n), size=n_boot)]) if n else None
        for regressor, column in regressors.items():
            sub = first[mask].assign(value=first.loc[mask, column])
            buckets = value_buckets(sub.reset_index(drop=True)).to_numpy()
            x = rlev_scale(sub["value"].to_numpy(float), ALPHA)
            for outcome in OUTCOMES:
                if outcome not in first or counts is None:
                    continue
                for name in STATISTICS:
                    rows = []
                    for frame in per_run.values():
                        y = np.nan_to_num(frame.loc[mask, outcome].to_numpy(float))
                        rows.append(
                            _statistic(x, y, counts, (buckets == 2) * 1.0, (buckets == 0) * 1.0, name)
                        )
                    out[outcome, stratum, regressor, name] = np.vstack(rows)
    return out


def _shown_differs(frame: pd.DataFrame) -> bool:
    return "shown_value" in frame and not np.allclose(frame["shown_value"], frame["value"])


def compare(
    stats: dict[tuple[str, str, str, str], np.ndarray],
    cells: dict[str, list[int]],
    baseline: str,
    seed: int = 0,
) -> pd.DataFrame:
    """Per cell, outcome, stratum, regressor and statistic: the seed mean, and the difference to
    ``baseline`` with a bootstrap 95% interval and p-value (seeds resampled within each cell)."""
    rng = np.random.default_rng(seed)
    rows = []
    for key, values in stats.items():
        n_boot = values.shape[1] - 1
        draws = {cell: rng.choice(runs, size=(n_boot, len(runs))) for cell, runs in cells.items()}
        boot = {cell: values[draws[cell], np.arange(1, n_boot + 1)[:, None]].mean(1) for cell in cells}
        for cell, runs in cells.items():
            row = dict(zip(("outcome", "stratum", "regressor", "statistic"), key, strict=True))
            row |= {"cell": cell, "n": len(runs), "mean": float(values[runs, 0].mean())}
            row["seed_sd"] = float(values[runs, 0].std(ddof=1)) if len(runs) > 1 else math.nan
            if cell != baseline and baseline in cells:
                diff = boot[cell] - boot[baseline]
                diff = diff[np.isfinite(diff)]
                row["delta"] = row["mean"] - float(values[cells[baseline], 0].mean())
                row["ci_low"], row["ci_high"] = (
                    np.percentile(diff, [2.5, 97.5]) if len(diff) else (math.nan,) * 2
                )
                row["p"] = (
                    float(min(1.0, 2 * min((diff <= 0).mean(), (diff >= 0).mean())))
                    if len(diff)
                    else math.nan
                )
            rows.append(row)
    return pd.DataFrame(rows)


def paired_table(
    runs: pd.DataFrame,
    cell_of: Callable[[pd.Series], str],
    load: Callable[[str], pd.DataFrame],
    baseline: str,
    n_boot: int = 2000,
) -> pd.DataFrame:
    """The whole analysis for the finished runs of a study: ``load(run_id)`` gives a run's ``changes``."""
    per_run = {r.run_id: load(r.run_id) for r in runs.itertuples()}
    cells: dict[str, list[int]] = {}
    for i, (_, row) in enumerate(runs.iterrows()):
        cells.setdefault(cell_of(row), []).append(i)
    return compare(run_statistics(per_run, n_boot), cells, baseline)


def to_markdown(table: pd.DataFrame, baseline: str = "correctness") -> str:
    """Means and slopes on the value scale, by outcome and stratum, each cell against the baseline."""
    view = table[table["statistic"].isin(["mean", "slope"])].copy()
    for column in ("delta", "ci_low", "ci_high", "p", "mde80"):
        if column not in view:
            view[column] = math.nan
    signed = lambda x: "" if pd.isna(x) else f"{x:+.3f}"  # noqa: E731
    plain = lambda x: "" if pd.isna(x) else f"{x:.3f}"  # noqa: E731
    view["estimate"] = view["mean"].map(signed)
    view["delta (95% CI)"] = [
        "" if pd.isna(d) else f"{d:+.3f} ({lo:+.3f}, {hi:+.3f})"
        for d, lo, hi in zip(view["delta"], view["ci_low"], view["ci_high"], strict=True)
    ]
    view["p"], view["MDE80"] = view["p"].map(plain), view["mde80"].map(plain)
    view["outcome"] = view["outcome"].map(OUTCOMES)
    shown = (
        "cell",
        "n",
        "outcome",
        "stratum",
        "statistic",
        "regressor",
        "estimate",
        "delta (95% CI)",
        "p",
        "MDE80",
    )
    context = [c for c in view.columns if c not in (*RESULT_COLUMNS, *shown)]
    note = (
        "\n\nmean: change from the starting policy over the stratum's questions; slope: that change per "
        "unit of the value scale s = 1 + min(10 v, 1); each the mean over seeds (n); delta: against the "
        f"{baseline} cell, 95% bootstrap interval over seeds and questions; MDE80: the smallest delta these "
        "seeds detect at 80% power (two-sided t, alpha 0.05)"
    )
    return view[[*context, *shown]].to_markdown(index=False) + note


RESULT_COLUMNS = ("outcome", "stratum", "regressor", "statistic", "cell", "n", "mean", "seed_sd", "delta",
                  "ci_low", "ci_high", "p", "mde80")  # fmt: skip
