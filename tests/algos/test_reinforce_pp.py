"""REINFORCE++ advantages against OpenRLHF's formula, alone and inside a real training step."""

import math

import pytest
import torch
from hydra.utils import instantiate

from ablate.algos.reinforce_pp import ReinforcePPTrainer, reinforce_pp_advantages
from ablate.config import compose
from ablate.data.synthetic import SyntheticExams
from ablate.models import load_model
from ablate.train import to_dataset, training_args

REWARDS = torch.tensor([1.0, 0.0, 2.0, 0.0])
LENGTHS = torch.tensor([2, 1, 1, 4])


def test_global_token_weighted_whitening_by_hand():
    # Token-weighted mean (2*1 + 2*1) / 8 = 0.5; variance (2*.25 + .25 + 2.25 + 4*.25) / 8 = 0.5.
    got = reinforce_pp_advantages(REWARDS, LENGTHS, group_size=2, baseline="none")
    s = 1 / math.sqrt(0.5)
    assert got.tolist() == pytest.approx([0.5 * s, -0.5 * s, 1.5 * s, -0.5 * s], rel=1e-5)


def test_prompt_baseline_centres_groups_first():
    # Group means 0.5 and 1.0 -> [0.5, -0.5, 1, -1]; token mean -0.3125; variance 4.96875 / 8.
    got = reinforce_pp_advantages(REWARDS, LENGTHS, group_size=2, baseline="prompt")
    centred = torch.tensor([0.5, -0.5, 1.0, -1.0]) + 0.3125
    assert got.tolist() == pytest.approx((centred / math.sqrt(4.96875 / 8)).tolist(), rel=1e-5)
    # Whitened: token-weighted mean 0 and variance 1.
    assert float((got * LENGTHS).sum()) == pytest.approx(0.0, abs=1e-5)
    assert float((got**2 * LENGTHS).sum() / LENGTHS.sum()) == pytest.approx(1.0, rel=1e-5)


def test_unknown_baseline_lists_choices():
    with pytest.raises(ValueError, match="valid choices are none, prompt"):
        reinforce_pp_advantages(REWARDS, LENGTHS, 2, baseline="group")


class KnownRewards:
    """Rewards fixed by position in the batch: 0, 1, 2, 0, 1, 2, ..."""

    __name__ = "known"

    def __call__(self, completions, **kwargs):
        return [float(i % 3) for i in range(len(completions))]


class Recording(ReinforcePPTrainer):
    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        self.recorded = out
        return out


@pytest.mark.parametrize("algo", ["reinforce_pp", "reinforce_pp_baseline"])
def test_trainer_uses_the_formula_in_a_real_step(algo, tmp_path):
    cfg = compose(
        [f"algo={algo}", "steps=1", "batch_size=12", "num_generations=3", "max_completion_length=8",
         "model.hidden_size=32", "model.layers=1", "model.heads=2", "model.intermediate_size=64",
         "data.num_exams=3", f"output_dir={tmp_path}"]
    )  # fmt: skip
    table = SyntheticExams(num_exams=3).load()
    model, tokenizer = load_model(instantiate(cfg.model))
    trainer = Recording(
        model=model,
        reward_funcs=[KnownRewards()],
        args=training_args(cfg, tmp_path),
        train_dataset=to_dataset(table[table["split"] == "train"]),
        processing_class=tokenizer,
        baseline=cfg.algo.trainer.baseline,
    )
    trainer.train()
    out = trainer.recorded
    rewards = torch.tensor([float(i % 3) for i in range(12)])
    lengths = out["completion_mask"].sum(dim=1)
    expected = reinforce_pp_advantages(rewards, lengths, 3, cfg.algo.trainer.baseline)
    assert out["advantages"].tolist() == pytest.approx(expected.tolist(), rel=1e-5)
    assert float((out["advantages"] * lengths).sum()) == pytest.approx(0.0, abs=1e-4)
