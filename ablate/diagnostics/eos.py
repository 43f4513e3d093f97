"""The gradient of the actual training loss on the end-of-sequence logit, per completion token.

RLEV's explanation of value-sensitive answer length is that the value scale s(x) multiplies
the policy gradient on the EOS logit. This measures it, exactly and without a second backward:

- ``c_t = dL/d log pi(y_t)`` is read from the backward pass of the real loss (TRL's
  ``loss_type`` normalisation, importance ratios, clipping and KL all included), by keeping the
  gradient of the per-token log-probabilities;
- ``dL/dz_eos = c_t * (1[y_t = eos] - pi_t(eos))`` for the logit ``z`` that enters the softmax
  (after TRL's logit scale, soft-capping and temperature); with an entropy bonus its term
  ``-e_t * pi_t(eos) * (log pi_t(eos) + H_t)`` is added, ``e_t = dL/dH_t``;
- ``log pi_t(eos) = log pi_t(y_t) + z_eos - z_{y_t}``: two dot products with the final hidden
  state, since TRL's fused LM head never materialises the logits.

Tokens are grouped by the question's value (exactly the bottom 20%, the middle and the top 20%
of the training questions, ties broken by question id: ``ablate.metrics.value_buckets``) and by
position (the terminal EOS token vs the tokens before it).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import torch

from ablate import launch
from ablate.names import BUCKETS, EOS_RATIO, EOS_SHARE_TOP, eos_key

POSITIONS = ("all", "terminal", "before")
TOKEN_COLUMNS = ("grad", "prob", "bucket", "pos")  # what a step records per completion token


def final_logits(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, cfg: Any, t: float):
    """``softcap(scale * (h W^T + b)) / T`` for the rows of ``weight`` given, as TRL's fused head computes."""
    z = hidden @ weight.T if weight.dim() == 2 else (hidden * weight).sum(-1)
    if bias is not None:
        z = z + bias
    scale = getattr(cfg, "logit_scale", None) or 1.0
    z = z * scale
    softcap = getattr(cfg, "final_logit_softcapping", None)
    if softcap:
        z = softcap * torch.tanh(z / softcap)
    return z / t


class EOSGradients:
    """Per-step statistics of dL/dz_eos, by value bucket and position, for one trainer."""

    def __init__(self, eos_token_id: int):
        self.eos_token_id = eos_token_id
        self.pending: list[dict[str, torch.Tensor]] = []
        self.step_tokens: dict[str, list[np.ndarray]] = defaultdict(list)

    def capture(
        self,
        logps: torch.Tensor,
        entropies: torch.Tensor | None,
        hidden: torch.Tensor,
        completion_ids: torch.Tensor,
        mask: torch.Tensor,
        buckets: torch.Tensor,
        lm_head: torch.nn.Module,
        config: Any,
        temperature: float,
    ) -> None:
        """Keep what the backward pass will complete: the log-probs (gradient retained) and pi(eos)."""
        logps.retain_grad()
        if entropies is not None and entropies.requires_grad:
            entropies.retain_grad()
        with torch.no_grad():
            weight, bias = lm_head.weight, lm_head.bias
            h = hidden.to(weight.dtype)

            def rows(ids: Any) -> torch.Tensor:
                return final_logits(h, weight[ids], None if bias is None else bias[ids], config, temperature)

            z_eos, z_y = rows(self.eos_token_id), rows(completion_ids)
            dtype = torch.promote_types(logps.dtype, torch.float32)
            log_pi_eos = (logps.detach().to(dtype) + (z_eos - z_y).to(dtype)).clamp(max=0.0)
        self.pending.append(
            {"logps": logps, "entropies": entropies, "log_pi_eos": log_pi_eos, "ids": completion_ids,
             "mask": mask.bool(), "buckets": buckets}
        )  # fmt: skip

    def eos_logit_grad(self, item: dict[str, torch.Tensor]) -> torch.Tensor:
        """dL/dz_eos per token, after the backward pass."""
        c = item["logps"].grad
        if c is None:
            return torch.zeros_like(item["log_pi_eos"])
        log_pi = item["log_pi_eos"]
        pi = log_pi.exp()
        grad = c.to(pi.dtype) * ((item["ids"] == self.eos_token_id).to(pi.dtype) - pi)
        ent = item["entropies"]
        if ent is not None and ent.grad is not None:
            grad = grad - ent.grad.to(pi.dtype) * pi * (log_pi + ent.detach().to(pi.dtype))
        return grad

    def after_backward(self) -> None:
        """Turn the captured micro-batches into token records for this optimisation step."""
        for item in self.pending:
            grad = self.eos_logit_grad(item)
            mask = item["mask"]
            terminal = (item["ids"] == self.eos_token_id) & mask
            buckets = item["buckets"].long().unsqueeze(1).expand_as(mask)
            pos = torch.where(terminal, 1, 2)
            self.step_tokens["grad"].append(grad[mask].float().cpu().numpy())
            self.step_tokens["prob"].append(item["log_pi_eos"].exp()[mask].float().cpu().numpy())
            self.step_tokens["bucket"].append(buckets[mask].cpu().numpy())
            self.step_tokens["pos"].append(pos[mask].cpu().numpy())
        self.pending.clear()

    def step_metrics(self) -> dict[str, float]:
        """``eos/grad_top20``, ``eos/grad_abs_bottom20_terminal``, ``eos/prob_middle``, ... for one step,
        over the tokens of every rank of a multi-process run (every rank must call it)."""
        world = launch.world_size()
        if world == 1 and not self.step_tokens:
            return {}
        cols = {k: np.concatenate(self.step_tokens.get(k, [np.zeros(0)])) for k in TOKEN_COLUMNS}
        self.step_tokens.clear()
        if world > 1:
            parts = launch.merge(cols)
            cols = {k: np.concatenate([p[k] for p in parts]) for k in TOKEN_COLUMNS}
            # DDP averages the ranks' gradients, so the global loss's gradient is each rank's / world.
            cols["grad"] = cols["grad"] / world
        if not len(cols["grad"]):
            return {}
        out: dict[str, float] = {}
        for b, bucket in enumerate(BUCKETS):
            for position in POSITIONS:
                sel = cols["bucket"] == b
                if position != "all":
                    sel &= cols["pos"] == (1 if position == "terminal" else 2)
                if not sel.any():
                    continue
                out[eos_key("grad", bucket, position)] = float(cols["grad"][sel].mean())
                out[eos_key("grad_abs", bucket, position)] = float(np.abs(cols["grad"][sel]).mean())
                out[eos_key("prob", bucket, position)] = float(cols["prob"][sel].mean())
        top, bottom = (
            out.get(eos_key("grad_abs", BUCKETS[-1]), 0.0),
            out.get(eos_key("grad_abs", BUCKETS[0]), 0.0),
        )
        # A step where no bottom-bucket token gets a gradient (every group of it all right or all wrong)
        # has no ratio; the share is defined whenever either bucket gets one.
        if bottom:
            out[EOS_RATIO] = top / bottom
        if top or bottom:
            out[EOS_SHARE_TOP] = top / (top + bottom)
        return out
