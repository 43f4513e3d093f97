"""One suite over every ``conf/reward/*.yaml``: what any reward variant must do."""

import pickle

import pytest
from hydra.utils import instantiate

from ablate.config import CONF_DIR, compose
from ablate.data.synthetic import SyntheticExams

VARIANTS = sorted(p.stem for p in (CONF_DIR / "reward").glob("*.yaml"))


def test_every_paper_variant_has_a_config():
    paper = {
        "correctness",
        "uniform",
        "shuffled",
        "multiplicative",
        "rlev",
        "weak_labels",
        "predicted",
        "noisy",
    }
    assert paper <= set(VARIANTS)


@pytest.fixture(scope="module")
def exams():
    table = SyntheticExams(num_exams=6, seed=0).load()
    # shown_value: the points a prompt prints (data=checks); here the true ones, shuffled across rows
    table["shown_value"] = table["value"].sample(frac=1, random_state=0).to_numpy()
    return table[table["split"] == "train"].head(40)


def compose_reward(variant: str):
    cfg = compose([f"reward={variant}"])
    return instantiate(cfg.reward)


def columns(rows):
    keys = ("answer", "value", "shown_value", "id", "total", "difficulty", "predicted_score")
    return {c: rows[c].tolist() for c in keys}


@pytest.mark.parametrize("variant", VARIANTS)
def test_reward_contract(variant, exams):
    reward = compose_reward(variant).fit(exams)
    assert reward.__name__ == variant
    right = [f"{s}" for s in exams["solution"]]  # worked solutions end with 'Answer: N'
    wrong = [f"Answer: {int(a) + 1}" for a in exams["answer"]]
    cols = columns(exams)

    got_right = reward(right, prompts=exams["prompt"].tolist(), **cols)
    got_wrong = reward(wrong, prompts=exams["prompt"].tolist(), **cols)
    assert len(got_right) == len(got_wrong) == len(exams)
    assert all(isinstance(r, float) for r in got_right)
    assert got_wrong == [0.0] * len(exams)  # wrong answers earn nothing, for every variant
    assert min(got_right) >= 1.0  # a correct answer earns at least the baseline
    if variant != "multiplicative":
        assert max(got_right) <= 2.0  # the clipped variants stay within the paper's [1, 2]

    # Deterministic, and the same after a pickle round trip (TRL may copy it to workers).
    assert reward(right, prompts=exams["prompt"].tolist(), **cols) == got_right
    clone = pickle.loads(pickle.dumps(reward))
    assert clone(right, prompts=exams["prompt"].tolist(), **cols) == got_right


def test_unknown_variant_lists_the_choices():
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException) as err:
        compose_reward("rlevv")
    for variant in VARIANTS:
        assert variant in str(err.value)


def test_negative_alpha_from_the_command_line_fails():
    cfg = compose(["reward=rlev", "reward.alpha=-2"])
    with pytest.raises(Exception, match=r"reward.alpha=-2"):
        instantiate(cfg.reward)
