"""How training went, per variant: its speed, and how far RL moved the policy.

From each run's per-step MLflow metrics: TRL's ``step_time`` and ``completions/mean_length``
give seconds per step and generated tokens per second (median over steps); the share of
correct samples (``reward/correct_rate``) and the sampled length over the first and the last
``window`` steps show what RL changed in the sampling policy, which greedy evaluation may not
show; ``eval/acc`` at the first and the last evaluation shows what it changed in greedy answers.
Each cell is the mean over the variant's runs (seeds).
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from ablate.names import eval_key

COLUMNS = {
    "step_s": "s/step",
    "gen_tok_s": "generated tok/s",
    "sampled_length_first": "sampled length, first steps",
    "sampled_length_last": "sampled length, last steps",
    "correct_first": "% correct samples, first steps",
    "correct_last": "% correct samples, last steps",
    "eval_acc_first": "greedy Acc, first eval",
    "eval_acc_last": "greedy Acc, last eval",
}


def run_dynamics(history: Callable[[str, str], pd.DataFrame], run_id: str, batch: int, window: int) -> dict:
    """One run's row of the table (see the module docstring); ``batch``: completions per step."""

    def series(metric: str) -> pd.Series:
        points = history(run_id, metric)
        return points.sort_values("step")["value"].reset_index(drop=True) if len(points) else pd.Series()

    step_time, length = series("step_time"), series("completions/mean_length")
    correct, acc = series("reward/correct_rate"), series(eval_key("acc"))
    steps = min(len(step_time), len(length))
    per_step_tokens = batch * length.iloc[:steps] / step_time.iloc[:steps]
    first, last = slice(None, window), slice(-window, None)
    return {
        "step_s": step_time.median(),
        "gen_tok_s": per_step_tokens.median(),
        "sampled_length_first": length.iloc[first].mean(),
        "sampled_length_last": length.iloc[last].mean(),
        "correct_first": 100 * correct.iloc[first].mean(),
        "correct_last": 100 * correct.iloc[last].mean(),
        "eval_acc_first": acc.iloc[0] if len(acc) else float("nan"),
        "eval_acc_last": acc.iloc[-1] if len(acc) else float("nan"),
    }


def dynamics_table(
    frame: pd.DataFrame,
    keys: list[str],
    history: Callable[[str, str], pd.DataFrame],
    batch_of: Callable[[str], int],
    window: int = 10,
) -> pd.DataFrame:
    """One row per variant (``keys``) of the finished runs in ``frame``, means over seeds, with ``n``."""
    done = frame[frame["status"] == "FINISHED"]
    rows = [
        {**{k: run[k] for k in keys}, **run_dynamics(history, run["run_id"], batch_of(run["run_id"]), window)}
        for _, run in done.iterrows()
    ]
    if not rows:
        return pd.DataFrame(columns=[*keys, "n", *COLUMNS])
    per_run = pd.DataFrame(rows)
    grouped = per_run.groupby(keys, sort=False, dropna=False)
    return grouped[list(COLUMNS)].mean().join(grouped.size().rename("n")).reset_index()


def to_markdown(table: pd.DataFrame, keys: list[str]) -> str:
    shown = table[[*keys, "n", *COLUMNS]].rename(columns=COLUMNS)
    return shown.to_markdown(index=False, floatfmt=".1f")
