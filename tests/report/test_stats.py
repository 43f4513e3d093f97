"""Confidence intervals and the paired bootstrap, on tables whose answers are known."""

import math

import numpy as np
import pandas as pd
import pytest

from ablate.report.stats import mean_ci, paired_bootstrap


def test_mean_ci_is_the_student_t_interval():
    mean, half = mean_ci(pd.Series([1.0, 2.0, 3.0]))
    assert mean == 2.0
    assert half == pytest.approx(4.302652729749464 / math.sqrt(3))  # t(0.975, 2) * sd / sqrt(n), sd = 1
    assert math.isnan(mean_ci(pd.Series([5.0]))[1])


def table(correct, length, values=None) -> pd.DataFrame:
    n = len(correct)
    values = values if values is not None else np.linspace(0.01, 0.2, n)
    return pd.DataFrame({"id": [f"q{i:03d}" for i in range(n)], "value": values, "correct": correct,
                         "length": length})  # fmt: skip


def test_identical_runs_never_differ():
    rng = np.random.default_rng(0)
    a = table(rng.integers(0, 2, 50), rng.integers(5, 40, 50))
    p = paired_bootstrap([a, a], [a.copy(), a.copy()], n_boot=500)
    names = ("acc", "h_acc", "length", "value_density", "acc_top20", "acc_bottom20", "length_gap")
    assert p == dict.fromkeys(names, 1.0)


def test_a_clearly_better_variant_is_significant_and_a_noisy_one_is_not():
    rng = np.random.default_rng(1)
    base = table(rng.integers(0, 2, 100), rng.integers(20, 40, 100))
    better = base.assign(correct=1, length=base["length"] // 2)  # right everywhere, half the length
    p = paired_bootstrap([better], [base], n_boot=1000)
    assert p["acc"] < 0.01 and p["h_acc"] < 0.01 and p["length"] < 0.01 and p["value_density"] < 0.01
    flipped = base.assign(correct=rng.permutation(base["correct"].to_numpy()))  # same rate, other questions
    assert paired_bootstrap([flipped], [base], n_boot=1000)["acc"] > 0.05


def test_runs_on_other_questions_are_refused():
    a = table([1, 0, 1, 0], [3, 4, 5, 6])
    b = a.assign(id=["x1", "x2", "x3", "x4"])
    with pytest.raises(ValueError, match="same questions"):
        paired_bootstrap([a], [b])
