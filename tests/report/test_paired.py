"""Question-by-question analysis on tables with known effects: slopes, contrasts, their comparison."""

import numpy as np
import pandas as pd
import pytest

from ablate.metrics import top_bottom
from ablate.report.paired import changes, compare, run_statistics
from ablate.rewards.base import rlev_scale

RNG = np.random.default_rng(0)
N = 400
QUESTIONS = pd.DataFrame(
    {
        "id": [f"q{i:03d}" for i in range(N)],
        "value": np.round(RNG.lognormal(-4.5, 1.2, N).clip(0.005, 0.3), 3),  # many ties, as on exams
        "difficulty": np.where(np.arange(N) % 2, "hard", "easy"),
    }
)
S = rlev_scale(QUESTIONS["value"].to_numpy(), 10)


def run_frame(slope_hard: float, noise: float, seed: int) -> pd.DataFrame:
    """A run whose hard questions' stop log-odds fell by ``1 + slope_hard * (s - 1)``, plus noise."""
    rng = np.random.default_rng(seed)
    hard = (QUESTIONS["difficulty"] == "hard").to_numpy()
    d = np.where(hard, -1.0 - slope_hard * (S - 1), 0.2) + noise * rng.standard_normal(N)
    return QUESTIONS.assign(d_stop_logit=d, d_length=rng.integers(-3, 4, N), d_correct=0.0)


def test_changes_pair_each_question_with_its_start():
    start = pd.DataFrame(
        {"id": ["b", "a"], "value": [0.2, 0.1], "length": [10, 20], "correct": [False, True]}
    )
    end = pd.DataFrame({"id": ["a", "b"], "value": [0.1, 0.2], "length": [25, 4], "correct": [True, True]})
    stops = pd.DataFrame(
        {"id": ["a", "a", "b"], "line": [1, 2, 1], "stop_logit_start": [0.0, 1.0, -1.0],
         "stop_logit_end": [-2.0, 5.0, 0.5], "difficulty": ["hard", "hard", "easy"]}
    )  # fmt: skip
    out = changes(start, end, stops)
    assert out["id"].tolist() == ["a", "b"]
    assert out["d_length"].tolist() == [5, -6] and out["d_correct"].tolist() == [0.0, 1.0]
    assert out["d_stop_logit"].tolist() == [-2.0, 1.5]  # the first answer line only
    assert out["difficulty"].tolist() == ["hard", "easy"]


def test_run_statistics_are_the_ols_slope_and_the_top_bottom_contrast():
    runs = {f"r{i}": run_frame(slope_hard=0.8, noise=0.3, seed=i) for i in range(3)}
    stats = run_statistics(runs, n_boot=50)
    hard = (QUESTIONS["difficulty"] == "hard").to_numpy()
    for i, frame in enumerate(runs.values()):
        y = frame["d_stop_logit"].to_numpy()
        slope = np.polyfit(S[hard], y[hard], 1)[0]
        assert stats["d_stop_logit", "hard", "true", "slope"][i, 0] == pytest.approx(slope)
        sub = frame[hard].reset_index(drop=True)
        top, bottom = top_bottom(sub)
        contrast = top["d_stop_logit"].mean() - bottom["d_stop_logit"].mean()
        assert stats["d_stop_logit", "hard", "true", "top_bottom"][i, 0] == pytest.approx(contrast)
        assert stats["d_stop_logit", "hard", "true", "mean"][i, 0] == pytest.approx(y[hard].mean())
    assert stats["d_stop_logit", "hard", "true", "slope"].shape == (3, 51)
    assert ("d_stop_logit", "all", "shown", "slope") not in stats  # no other points were shown


def test_compare_finds_a_real_slope_difference_and_not_a_null_one():
    runs = {f"c{i}": run_frame(0.0, 0.2, i) for i in range(6)}
    runs |= {f"v{i}": run_frame(-1.0, 0.2, 100 + i) for i in range(6)}  # value moves hard questions further
    runs |= {f"n{i}": run_frame(0.0, 0.2, 200 + i) for i in range(6)}  # a variant that changes nothing
    cells = {"correctness": list(range(6)), "rlev": list(range(6, 12)), "null": list(range(12, 18))}
    table = compare(run_statistics(runs, n_boot=400), cells, baseline="correctness")
    key = (
        (table["outcome"] == "d_stop_logit") & (table["stratum"] == "hard") & (table["statistic"] == "slope")
    )
    rlev = table[key & (table["cell"] == "rlev")].iloc[0]
    assert rlev["ci_low"] < 1.0 < rlev["ci_high"] and rlev["ci_low"] > 0 and rlev["p"] < 0.01
    null = table[key & (table["cell"] == "null")].iloc[0]
    assert null["ci_low"] < 0 < null["ci_high"] and null["p"] > 0.05
    assert table[key & (table["cell"] == "correctness")]["delta"].isna().all()
