import math

import numpy as np
import pandas as pd
import pytest

from ablate import metrics

# Hand-computed: sum v = 0.40, v over correct = 0.10 + 0.20 + 0.03 = 0.33 -> H-Acc 82.5;
# mean length 30 -> value density 2.75; top-20% is the 0.20 question (right), bottom-20% the 0.02 (wrong).
FIVE = pd.DataFrame(
    {
        "value": [0.02, 0.05, 0.10, 0.20, 0.03],
        "correct": [False, False, True, True, True],
        "length": [10, 20, 30, 40, 50],
    }
)


def test_five_row_table_by_hand():
    s = metrics.summary(FIVE)
    assert s["acc"] == pytest.approx(60.0)
    assert s["h_acc"] == pytest.approx(82.5)
    assert s["length"] == pytest.approx(30.0)
    assert s["value_density"] == pytest.approx(2.75)
    assert s["acc_top20"] == 100.0
    assert s["acc_bottom20"] == 0.0
    assert s["length_gap"] == 40 - 10  # the 0.20 question's length minus the 0.02 question's
    assert s["n"] == 5


def test_paper_value_density_example():
    # The paper's REINFORCE++ 7B RLEV row: H-Acc 57.0, length 84.8, value density 0.67.
    df = pd.DataFrame({"value": [0.57, 0.43], "correct": [True, False], "length": [80.0, 89.6]})
    s = metrics.summary(df)
    assert s["h_acc"] == pytest.approx(57.0) and s["length"] == pytest.approx(84.8)
    assert round(s["value_density"], 2) == 0.67


def test_h_acc_differs_from_acc_when_values_differ():
    df = pd.DataFrame({"value": [0.9, 0.1], "correct": [True, False], "length": [1, 1]})
    s = metrics.summary(df)
    assert s["acc"] == 50.0 and s["h_acc"] == pytest.approx(90.0)


def test_h_acc_is_the_same_to_the_last_digit_in_any_row_order():
    # A plain float sum of these values takes five different last digits over the orders of the rows
    # (and numpy's SIMD summation picks its order by CPU): a shipped report must not depend on either.
    import itertools

    value = [0.1, 0.2, 0.3, 0.7, 0.05, 0.013, 0.4]
    credit = [1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0]
    seen = set()
    for order in itertools.permutations(range(len(value))):
        v, c = np.array(value)[list(order)], np.array(credit)[list(order)]
        seen.add(metrics.h_acc(v, c))
    assert seen == {100 * math.fsum([0.1, 0.2, 0.7, 0.05, 0.4]) / math.fsum(value)}


def test_zero_values_give_nan_h_acc():
    df = pd.DataFrame({"value": [0.0, 0.0], "correct": [True, False], "length": [1, 1]})
    assert math.isnan(metrics.summary(df)["h_acc"])


def test_top_bottom_twenty_percent_sizes_and_ties():
    df = pd.DataFrame({"value": [0.1] * 10, "correct": [True] * 2 + [False] * 8, "length": [1] * 10})
    top, bottom = metrics.top_bottom(df)
    assert len(top) == len(bottom) == 2
    # Ties keep table order: bottom is the first two rows, top the last two.
    assert bottom.index.tolist() == [0, 1] and top.index.tolist() == [8, 9]


def test_length_by_value_bucket():
    df = pd.DataFrame(
        {"value": [0.5, 0.1, 0.4, 0.2, 0.3], "correct": [1, 0, 1, 0, 1], "length": [50, 10, 40, 20, 30]}
    )
    table = metrics.length_by_value_bucket(df, buckets=5)
    assert table["length"].tolist() == [10, 20, 30, 40, 50]
    assert table["value_mean"].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert table["acc"].tolist() == [0, 0, 100, 100, 100]
    assert metrics.length_by_value_bucket(df, buckets=2)["n"].tolist() == [3, 2]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (FIVE.drop(columns="length"), r"missing column\(s\) \['length'\]"),
        (FIVE.assign(correct=["yes"] * 5), "row 1: 'correct' must be true/false"),
        (FIVE.assign(value=[0.1, "x", 0.1, 0.1, 0.1]), "row 2: 'value' must be a number"),
        (FIVE.iloc[:0], "no rows"),
    ],
)
def test_bad_predictions_are_named(frame, message):
    with pytest.raises(ValueError, match=message):
        metrics.summary(frame)


def test_top_bottom_are_exact_20_percent_sets_with_ties_broken_by_question_id():
    # 60% of the questions share the lowest value, as on exams where most questions are worth 1 point.
    df = pd.DataFrame(
        {"id": [f"q{i}" for i in range(50)], "value": [0.01] * 30 + [0.02 + i / 100 for i in range(20)],
         "correct": [True] * 50, "length": range(50)}
    )  # fmt: skip
    top, bottom = metrics.top_bottom(df)
    assert len(top) == len(bottom) == 10
    assert (bottom["value"] == 0.01).all() and top["value"].min() > 0.11
    shuffled = df.sample(frac=1, random_state=3)
    again_top, again_bottom = metrics.top_bottom(shuffled)
    assert set(again_bottom["id"]) == set(bottom["id"]) and set(again_top["id"]) == set(
        top["id"]
    )  # not row order
    buckets = metrics.value_buckets(shuffled)
    assert buckets.value_counts().to_dict() == {1: 30, 0: 10, 2: 10}
    assert set(shuffled.loc[buckets == 0, "id"]) == set(bottom["id"])
    by_bucket = metrics.length_by_value_bucket(shuffled, buckets=5)
    assert by_bucket["n"].tolist() == [10] * 5
    assert by_bucket["length"].tolist() == pytest.approx(
        metrics.length_by_value_bucket(df, buckets=5)["length"].tolist()
    )
