"""The EOS-gradient diagnostic equals autograd's gradient on the EOS logit, token by token."""

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from trl import GRPOTrainer, RLOOTrainer

from ablate.algos.reinforce_pp import ReinforcePPTrainer
from ablate.diagnostics.eos import final_logits
from ablate.diagnostics.trainer import value_buckets, with_eos_diagnostics
from ablate.models import load_model
from ablate.train import to_dataset, training_args
from tests.algos.test_reinforce_pp import KnownRewards
from tests.helpers import FAST, compose_train


def materialised(trainer_cls: type) -> type:
    """A test-only trainer whose log-probs come from full logits, with the logits' gradient kept."""

    class Materialised(trainer_cls):
        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *args,
                                               compute_entropy=False, **kwargs):  # fmt: skip
            out = model(input_ids=input_ids, attention_mask=attention_mask)
            raw = out.logits[:, :-1][:, -logits_to_keep:]
            base = self.accelerator.unwrap_model(model)
            z = final_logits_from_raw(raw, base.config, self.temperature)
            if torch.is_grad_enabled():
                z.retain_grad()
                self.reference_logits.append(z)
            log_probs = z.log_softmax(-1)
            labels = input_ids[:, -logits_to_keep:]
            logps = log_probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
            entropy = -(log_probs.exp() * log_probs).sum(-1) if compute_entropy else None
            return logps, entropy, None

    return Materialised


def final_logits_from_raw(raw, config, temperature):
    # The same transform as final_logits, applied to logits the model already projected.
    return final_logits(raw, torch.eye(raw.size(-1), dtype=raw.dtype), None, config, temperature)


CASES = [
    ("grpo", GRPOTrainer, ["algo.args.loss_type=dapo"]),
    ("grpo", GRPOTrainer, ["algo.args.loss_type=grpo", "algo.args.scale_rewards=none"]),
    ("grpo", GRPOTrainer, ["algo.args.loss_type=dr_grpo", "algo.args.beta=0.1"]),
    ("grpo", GRPOTrainer, ["algo.args.loss_type=bnpo", "+algo.args.entropy_coef=0.05"]),
    ("rloo", RLOOTrainer, []),
    ("reinforce_pp", ReinforcePPTrainer, []),
    ("reinforce_pp_baseline", ReinforcePPTrainer, []),
]


@pytest.mark.parametrize(
    ("algo", "trainer_cls", "overrides"), CASES, ids=[" ".join(c[2]) or c[0] for c in CASES]
)
def test_diagnostic_matches_autograd_per_token(algo, trainer_cls, overrides, tmp_path):
    cfg = compose_train(
        *FAST, f"algo={algo}", *overrides, "steps=4", "algo.args.num_iterations=2", "algo.args.epsilon=0.05",
        "lr=2e-3", "batch_size=12", "num_generations=3", f"output_dir={tmp_path}",
    )  # fmt: skip
    table = instantiate(cfg.data).load()
    train = table[table["split"] == "train"]
    model, tokenizer = load_model(instantiate(cfg.model))
    model = model.double()  # per-token relative error is then about the formula, not float32 rounding
    partial = instantiate(cfg.algo.trainer)
    cls = with_eos_diagnostics(materialised(partial.func))
    trainer = cls(
        model=model, reward_funcs=[KnownRewards()], args=training_args(cfg, Path(tmp_path)),
        train_dataset=to_dataset(train), processing_class=tokenizer, value_buckets=value_buckets(train),
        **partial.keywords,
    )  # fmt: skip
    trainer.reference_logits = []
    checked = []
    original = trainer.eos_stats.after_backward

    def compare_then_aggregate():
        for item, z in zip(trainer.eos_stats.pending, trainer.reference_logits, strict=True):
            mask = item["mask"]
            expected = z.grad[..., tokenizer.eos_token_id][mask].double()
            got = trainer.eos_stats.eos_logit_grad(item)[mask].double()
            scale = expected.abs().clamp(min=1e-12)
            checked.append((float(((got - expected).abs() / scale).max()), float(expected.abs().max())))
        trainer.reference_logits.clear()
        original()

    trainer.eos_stats.after_backward = compare_then_aggregate
    trainer.train()
    assert len(checked) == 4  # 4 optimisation steps (2 generations x 2 iterations), one micro-batch each
    # A real signal was compared (a second iteration whose every token is clipped has none).
    assert sum(magnitude > 0 for _, magnitude in checked) >= 3
    worst = max(err for err, _ in checked)
    assert worst < 1e-4, f"relative error {worst:.2e}"
    clipped = [v for h in trainer.state.log_history for k, v in h.items() if k.startswith("clip_ratio/")]
    assert max(clipped) > 0 or sum(magnitude == 0 for _, magnitude in checked) > 0  # clipping was exercised
