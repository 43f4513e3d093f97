"""EOS-gradient diagnostics on any of TRL's GRPO-family trainers (GRPO, RLOO, REINFORCE++).

``with_eos_diagnostics(GRPOTrainer)`` returns a subclass that records, on every optimisation
step, the statistics of ``ablate.diagnostics.eos`` into the trainer's own metrics, so they are
logged with TRL's (``eos/grad_top20``, ...). Nothing changes in what the trainer computes.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from ablate import metrics
from ablate.diagnostics.eos import EOSGradients


class EOSDiagnosticsMixin:
    """Hooks around the trainer's own loss: capture before backward, aggregate after it."""

    def __init__(self, *args: Any, value_buckets: dict[str, int], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.value_buckets = value_buckets  # question id -> 0 bottom 20%, 1 middle, 2 top 20% by value
        self.eos_stats = EOSGradients(self.processing_class.eos_token_id)
        self._eos_inputs: dict[str, Any] | None = None

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        # One value bucket per completion rides along with the batch through TRL's shuffling and splitting.
        buckets = [self.value_buckets.get(str(x.get("id")), 1) for x in inputs]
        out["eos_bucket"] = torch.tensor(buckets, device=out["completion_ids"].device)
        return out

    def _compute_loss(self, model, inputs):
        self._eos_inputs = inputs
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._eos_inputs = None

    def _get_per_token_logps_and_entropies(
        self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs
    ):
        inputs = self._eos_inputs
        if inputs is None or not torch.is_grad_enabled():
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, *args, **kwargs
            )
        base = self.accelerator.unwrap_model(model)
        base = base.get_base_model() if hasattr(base, "get_base_model") else base
        hidden: list[torch.Tensor] = []
        hook = base.base_model.register_forward_hook(lambda mod, a, out: hidden.append(out.last_hidden_state))
        try:
            result = super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, *args, **kwargs
            )
        finally:
            hook.remove()
        states = torch.cat(hidden, dim=0)[:, -logits_to_keep - 1 : -1]
        head, config = base.get_output_embeddings(), base.config.get_text_config()
        ids, mask, buckets = inputs["completion_ids"], inputs["completion_mask"], inputs["eos_bucket"]
        self.eos_stats.capture(
            result[0], result[1], states.detach(), ids, mask, buckets, head, config, self.temperature
        )
        return result

    def training_step(self, model, inputs, num_items_in_batch):
        out = super().training_step(model, inputs, num_items_in_batch)
        self.eos_stats.after_backward()
        if self._step % self.current_gradient_accumulation_steps == 0:
            for name, value in self.eos_stats.step_metrics().items():
                self._metrics["train"][name].append(value)
        return out


def value_buckets(train: pd.DataFrame) -> dict[str, int]:
    """Question id -> 0 (bottom 20% by value), 1 (middle), 2 (top 20%): exact sets, ties by id hash."""
    return dict(zip(train["id"].astype(str), metrics.value_buckets(train).tolist(), strict=True))


def with_eos_diagnostics(trainer_cls: type) -> type:
    """``trainer_cls`` with the EOS-gradient diagnostics mixed in."""
    return type(f"EOSDiagnostics{trainer_cls.__name__}", (EOSDiagnosticsMixin, trainer_cls), {})
