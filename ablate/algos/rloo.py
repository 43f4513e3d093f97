"""RLOO on TRL's RLOOTrainer, without the forward pass it repeats when training is on-policy.

RLOOTrainer scores every generation batch with a no-grad forward ("old" log-probs) before the
loss forward. When nothing can change the policy in between (one optimisation pass per
generation batch, every micro-batch of it in the same optimiser step) and no KL term needs
the old log-probs in the reward, that forward repeats the loss forward's numbers: here the loss
forward's own log-probs, detached, stand in for them. The importance ratio is exactly 1 either
way, so training is unchanged (``tests/algos/test_rloo.py`` compares the weights bitwise), and
each step does one forward fewer. GRPOTrainer already skips it under the same condition.
"""

from __future__ import annotations

from typing import Any

import torch
from trl import RLOOTrainer as TRLRLOOTrainer


class OnPolicyLogpsMixin:
    """Skip the old-log-probs forward when it equals the loss forward; otherwise change nothing."""

    _skip_old_logps = False
    _loss_inputs: dict[str, Any] | None = None

    def old_logps_needed(self) -> bool:
        """True when the policy may change between generation and loss, or the KL reward needs them."""
        generate_every = self.args.steps_per_generation * self.num_iterations
        return self.beta != 0.0 or self.args.gradient_accumulation_steps % generate_every != 0

    def _generate_and_score_completions(self, inputs):
        self._skip_old_logps = self.model.training and not self.old_logps_needed()
        try:
            return super()._generate_and_score_completions(inputs)
        finally:
            self._skip_old_logps = False

    def _compute_loss(self, model, inputs):
        # NaN marks a batch whose old log-probs were skipped (a computed value is never NaN).
        self._loss_inputs = inputs if bool(inputs["old_logps"].isnan().all()) else None
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._loss_inputs = None

    def _get_per_token_logps_and_entropies(
        self, model, input_ids, attention_mask, logits_to_keep, *args, **kw
    ):
        if self._skip_old_logps and not torch.is_grad_enabled():
            self._skip_old_logps = False  # the first no-grad forward of a generation batch is the old one
            nan = torch.full((input_ids.size(0), logits_to_keep), float("nan"), device=input_ids.device)
            return nan, None, None
        result = super()._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, logits_to_keep, *args, **kw
        )
        inputs = self._loss_inputs
        if inputs is not None and torch.is_grad_enabled():
            inputs["old_logps"] = (result[0].detach() * inputs["completion_mask"]).sum(1)
        return result


class RLOOTrainer(OnPolicyLogpsMixin, TRLRLOOTrainer):
    """TRL's RLOOTrainer with the repeated old-log-probs forward skipped when it is exact to do so."""
