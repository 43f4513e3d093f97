"""Power of a seed-level comparison: the MDE and the seeds an effect needs, against the t formula."""

import math

import pandas as pd
import pytest
from scipy import stats

from ablate.report.power import mde, power_row, power_table, seeds_needed


def test_mde_is_the_two_sample_t_formula():
    # 10 + 10 seeds, SD 2 in each cell: (t_.975,18 + t_.8,18) * sqrt(4/10 + 4/10).
    expected = (stats.t.ppf(0.975, 18) + stats.t.ppf(0.8, 18)) * math.sqrt(0.8)
    assert mde(2.0, 10, 2.0, 10) == pytest.approx(expected)
    assert expected == pytest.approx(2.650, abs=1e-3)
    assert math.isnan(mde(2.0, 1, 2.0, 10))


def test_seeds_needed_is_the_smallest_n_that_detects_the_effect():
    n = seeds_needed(2.6, effect=2.0)
    assert mde(2.6, n, 2.6, n) <= 2.0 < mde(2.6, n - 1, 2.6, n - 1)
    assert n == 28  # the reproduction's H-Acc spread needs about 27 seeds for a 2-point effect
    assert seeds_needed(0.0, 1.0) == 2 and seeds_needed(float("nan"), 1.0) > 10_000


def test_power_table_compares_each_variant_with_correctness_of_its_algorithm():
    frame = pd.DataFrame(
        {
            "algo": ["rloo"] * 6 + ["grpo"] * 2,
            "reward": ["correctness"] * 3 + ["rlev"] * 3 + ["rlev", "rlev"],
            "h_acc": [70.0, 72.0, 74.0, 75.0, 77.0, 79.0, 50.0, 52.0],
        }
    )
    table = power_table(frame, ["algo", "reward"], ["h_acc"], effect=2.0)
    assert len(table) == 1  # grpo has no correctness cell to compare with
    row = table.iloc[0]
    assert (row["algo"], row["reward"], row["delta"], row["n"], row["seed_sd"]) == (
        "rloo",
        "rlev",
        5.0,
        3,
        2.0,
    )
    assert row["mde80"] == pytest.approx(mde(2.0, 3, 2.0, 3))
    assert row["seeds_for_2"] == seeds_needed(2.0, 2.0)
    assert power_row(pd.Series([1.0]), pd.Series([2.0]), 1.0)["n"] == 1
