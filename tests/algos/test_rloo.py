"""ablate's RLOOTrainer skips the repeated old-log-probs forward and changes nothing else."""

from pathlib import Path

import pytest
import torch
import trl
from hydra.utils import instantiate

from ablate.algos.rloo import RLOOTrainer
from ablate.diagnostics.trainer import value_buckets, with_eos_diagnostics
from ablate.models import load_model
from ablate.train import to_dataset, training_args
from tests.algos.test_reinforce_pp import KnownRewards
from tests.helpers import FAST, compose_train


def counting(trainer_cls: type) -> type:
    """``trainer_cls`` counting its no-grad (scoring) and grad (loss) forwards."""

    class Counting(trainer_cls):
        def _get_per_token_logps_and_entropies(self, *args, **kwargs):
            out = super()._get_per_token_logps_and_entropies(*args, **kwargs)
            if not torch.isnan(out[0]).all():  # a skipped forward returns NaN without running the model
                self.forwards["grad" if torch.is_grad_enabled() else "no_grad"] += 1
            return out

    Counting.forwards = {"no_grad": 0, "grad": 0}  # one tally per class made
    return Counting


def train(trainer_cls: type, tmp_path: Path, *overrides: str):
    cfg = compose_train(
        *FAST, "algo=rloo", "steps=3", "lr=5e-3", "batch_size=12", "num_generations=3",
        f"output_dir={tmp_path}", *overrides,
    )  # fmt: skip
    table = instantiate(cfg.data).load()
    train_rows = table[table["split"] == "train"]
    model, tokenizer = load_model(instantiate(cfg.model))
    trainer = with_eos_diagnostics(counting(trainer_cls))(
        model=model, reward_funcs=[KnownRewards()], args=training_args(cfg, tmp_path),
        train_dataset=to_dataset(train_rows), processing_class=tokenizer,
        value_buckets=value_buckets(train_rows),
    )  # fmt: skip
    trainer.train()
    return trainer


def logged(trainer) -> list[dict[str, float]]:
    drop = ("step_time", "train_runtime", "train_samples_per_second", "train_steps_per_second")
    return [{k: v for k, v in h.items() if k not in drop} for h in trainer.state.log_history]


@pytest.mark.parametrize(
    ("overrides", "skipped"),
    [
        ([], True),  # on-policy, no KL: the old log-probs forward is the loss forward's
        (["algo.args.num_iterations=2"], False),  # a second pass sees a changed policy
        (["algo.args.beta=0.1"], False),  # the KL reward needs the old log-probs
    ],
    ids=["on-policy", "two-iterations", "kl"],
)
def test_same_weights_and_logs_as_trl(overrides, skipped, tmp_path):
    ours = train(RLOOTrainer, tmp_path / "ours", *overrides)
    theirs = train(trl.RLOOTrainer, tmp_path / "trl", *overrides)
    for (name, a), (_, b) in zip(ours.model.named_parameters(), theirs.model.named_parameters(), strict=True):
        assert torch.equal(a, b), f"{name} differs"
    assert logged(ours) == logged(theirs)
    assert any("eos/grad_top20" in h or "eos/grad_middle" in h for h in logged(ours))
    assert ours.forwards["grad"] == theirs.forwards["grad"] == ours.state.global_step == 3
    assert theirs.forwards["no_grad"] >= 2  # TRL scores every generation batch
    assert ours.forwards["no_grad"] == (0 if skipped else theirs.forwards["no_grad"])


def test_training_without_gradient_checkpointing_gives_the_same_weights(tmp_path):
    # TRL turns checkpointing on; the CPU experiments turn it off to skip the backward's second forward.
    on = train(RLOOTrainer, tmp_path / "on")
    off = train(RLOOTrainer, tmp_path / "off", "+algo.args.gradient_checkpointing=false")
    assert on.args.gradient_checkpointing and not off.args.gradient_checkpointing
    for a, b in zip(on.model.parameters(), off.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert logged(on) == logged(off)
