"""Exact rewards of each variant, from the paper's formulas."""

import hashlib
import pickle

import numpy as np
import pandas as pd
import pytest

from ablate.rewards import (
    CorrectnessReward,
    MultiplicativeReward,
    NoisyValueReward,
    PredictedValueReward,
    ReversedReward,
    RLEVReward,
    ShuffledReward,
    UniformReward,
    WeakLabelReward,
    rlev_scale,
)
from ablate.rewards.noisy import question_noise

RIGHT, WRONG = "so the total is \\boxed{12}", "Answer: 13"


def test_rlev_paper_numbers():
    reward = RLEVReward(alpha=10)
    assert reward([RIGHT, WRONG], answer=["12", "12"], value=[0.02, 0.02]) == pytest.approx([1.2, 0.0])
    assert reward([RIGHT, WRONG], answer=["12", "12"], value=[0.2, 0.2]) == pytest.approx([2.0, 0.0])
    # The clip: any v >= 1/alpha earns 2.
    assert reward([RIGHT], answer=["12"], value=[0.7]) == pytest.approx([2.0])
    assert reward([RIGHT], answer=["12"], value=[0.0]) == pytest.approx([1.0])


def test_rlev_scale_formula():
    v = np.array([0.0, 0.02, 0.05, 0.1, 0.5])
    assert rlev_scale(v, 10).tolist() == pytest.approx([1.0, 1.2, 1.5, 2.0, 2.0])
    assert rlev_scale(v, 1).tolist() == pytest.approx([1.0, 1.02, 1.05, 1.1, 1.5])


def test_correctness_ignores_value():
    assert CorrectnessReward()([RIGHT, WRONG, RIGHT], answer=["12"] * 3, value=[0.2, 0.2, 0.01]) == [
        1.0,
        0.0,
        1.0,
    ]


def test_multiplicative_is_unclipped():
    reward = MultiplicativeReward(alpha=10)
    assert reward([RIGHT, RIGHT, WRONG], answer=["12"] * 3, value=[0.02, 0.3, 0.3]) == pytest.approx(
        [1.2, 4.0, 0.0]
    )


def test_uniform_is_the_training_mean_rlev_scale():
    train = pd.DataFrame({"value": [0.02, 0.2, 0.05, 0.0]})  # scales 1.2, 2.0, 1.5, 1.0 -> mean 1.425
    reward = UniformReward(alpha=10).fit(train)
    assert reward.constant == pytest.approx(1.425)
    assert reward([RIGHT, WRONG, RIGHT], answer=["12"] * 3, value=[0.9, 0.9, 0.0]) == pytest.approx(
        [1.425, 0, 1.425]
    )
    with pytest.raises(RuntimeError, match="call fit"):
        UniformReward()([RIGHT], answer=["12"], value=[0.1])


def test_shuffled_permutes_values_across_the_training_set():
    train = pd.DataFrame({"id": [f"q{i}" for i in range(50)], "value": np.linspace(0, 0.098, 50)})
    reward = ShuffledReward(alpha=10, seed=0).fit(train)
    got = reward([RIGHT] * 50, answer=["12"] * 50, id=train["id"].tolist(), value=train["value"].tolist())
    # Same multiset of rewards as RLEV, different assignment.
    expected = rlev_scale(train["value"].to_numpy(), 10)
    assert sorted(got) == pytest.approx(sorted(expected))
    assert not np.allclose(got, expected)
    again = ShuffledReward(alpha=10, seed=0).fit(train)
    assert again([RIGHT] * 50, answer=["12"] * 50, id=train["id"].tolist()) == got
    with pytest.raises(KeyError, match="not in the training set"):
        reward([RIGHT], answer=["12"], id=["unknown"])


def test_reversed_pays_each_question_as_its_mirror_by_value_rank():
    values = [0.03, 0.01, 0.05, 0.01, 0.02]  # q1 and q3 tie: the id hash orders them
    train = pd.DataFrame({"id": [f"q{i}" for i in range(5)], "value": values})
    reward = ReversedReward(alpha=20).fit(train)
    got = reward([RIGHT] * 5, answer=["12"] * 5, id=train["id"].tolist())
    low, high = sorted(["q1", "q3"], key=lambda i: hashlib.sha256(i.encode()).hexdigest())
    mirror = {"q2": 0.01, "q0": 0.01, "q4": 0.02, low: 0.05, high: 0.03}  # rank k paid as rank 4 - k
    assert got == pytest.approx([1 + min(20 * mirror[f"q{i}"], 1) for i in range(5)])
    assert sorted(got) == pytest.approx(sorted(rlev_scale(np.array(values), 20)))  # RLEV's rewards
    with pytest.raises(KeyError, match="reversed reward: question id 'x' is not in the training set"):
        reward([RIGHT], answer=["12"], id=["x"])


def test_weak_labels_use_the_paper_map():
    reward = WeakLabelReward(alpha=10)
    levels = ["primary", "junior", "senior", "university", "phd"]
    got = reward([RIGHT] * 5, answer=["12"] * 5, difficulty=levels)
    assert got == pytest.approx([1.1, 1.2, 1.4, 1.6, 1.8])
    with pytest.raises(KeyError, match=r"valid labels .* are primary, junior, senior, university, phd"):
        reward([RIGHT], answer=["12"], difficulty=["kindergarten"])


def test_predicted_from_column_and_from_predictor():
    reward = PredictedValueReward(alpha=10)
    assert reward(
        [RIGHT, RIGHT], answer=["12"] * 2, predicted_score=[3.0, 30.0], total=[150, 150]
    ) == pytest.approx([1.2, 2.0])
    with_predictor = PredictedValueReward(alpha=10, predictor=LengthPredictor())
    assert with_predictor([RIGHT], answer=["12"], prompts=["abcd"], total=[100]) == pytest.approx([1.4])
    with pytest.raises(KeyError, match="no 'predicted_score' column"):
        reward([RIGHT], answer=["12"], total=[100])


class LengthPredictor:
    """A real (if crude) predictor: one point per prompt character."""

    def __call__(self, prompts):
        return [float(len(p)) for p in prompts]


def test_noisy_values_are_fixed_per_question_and_clipped():
    ids = [f"q{i}" for i in range(2000)]
    values = [0.02] * 2000
    zero = NoisyValueReward(alpha=10, sigma=0.0)([RIGHT] * 3, answer=["12"] * 3, value=values[:3], id=ids[:3])
    assert zero == pytest.approx([1.2] * 3)
    noisy = NoisyValueReward(alpha=10, sigma=0.05, seed=1)
    eps = np.array([question_noise(i, 1) for i in ids])
    assert abs(eps.mean()) < 0.1 and abs(eps.std() - 1.0) < 0.05
    expected_v = np.clip(0.02 + 0.05 * eps, 0.0, 1.0)
    assert noisy.values(2000, {"value": values, "id": ids}) == pytest.approx(expected_v)
    assert (expected_v == 0.0).any()  # v - 0.05 * eps < 0 for eps < -0.4: the clip is exercised
    got = noisy([RIGHT] * 2000, answer=["12"] * 2000, value=values, id=ids)
    assert got == pytest.approx(rlev_scale(expected_v, 10))
    other_seed = NoisyValueReward(alpha=10, sigma=0.05, seed=2).values(2000, {"value": values, "id": ids})
    assert not np.allclose(other_seed, expected_v)
    with pytest.raises(ValueError, match=r"reward\.sigma=-0\.1"):
        NoisyValueReward(sigma=-0.1)


@pytest.mark.parametrize(
    "cls", [RLEVReward, MultiplicativeReward, UniformReward, ShuffledReward, NoisyValueReward]
)
def test_negative_alpha_fails_with_the_valid_range(cls):
    with pytest.raises(ValueError, match=r"reward.alpha=-1: must be a finite number >= 0"):
        cls(alpha=-1)


def test_rewards_pickle_and_keep_their_name():
    reward = ShuffledReward(alpha=5, seed=3).fit(pd.DataFrame({"id": ["a", "b"], "value": [0.1, 0.0]}))
    clone = pickle.loads(pickle.dumps(reward))
    assert clone.__name__ == "shuffled"
    assert clone([RIGHT, RIGHT], answer=["12"] * 2, id=["a", "b"]) == reward(
        [RIGHT, RIGHT], answer=["12"] * 2, id=["a", "b"]
    )


def test_trl_conversational_completions_and_metric_logging():
    logged = {}
    reward = RLEVReward(alpha=10)
    got = reward(
        [[{"role": "assistant", "content": RIGHT}], [{"role": "assistant", "content": WRONG}]],
        answer=["12", "12"],
        value=[0.05, 0.05],
        log_metric=lambda name, value: logged.__setitem__(name, value),
    )
    assert got == pytest.approx([1.5, 0.0])
    assert logged == {"reward/scale_mean": pytest.approx(1.5), "reward/correct_rate": pytest.approx(0.5)}
