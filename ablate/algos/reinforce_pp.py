"""REINFORCE++ (OpenRLHF's ``reinforce`` and ``reinforce_baseline`` estimators) on TRL's GRPOTrainer.

GRPO subtracts the per-prompt mean and can only change how it divides by the std, so TRL has
no option for REINFORCE++'s advantage. This subclass keeps everything else of GRPOTrainer
(generation, the clipped loss and its ``loss_type``, KL, logging) and replaces the advantage:

- ``baseline="none"`` (REINFORCE++): ``A_i = (r_i - mu) / sigma``
- ``baseline="prompt"`` (REINFORCE++-baseline): ``A_i = (r_i - mean_{j in group(i)} r_j - mu) / sigma``

where ``mu`` and ``sigma`` whiten over the whole global batch. As in OpenRLHF, whitening is over
completion tokens (a sequence's advantage counts once per token it generated), since the
advantage is broadcast to every token before it is normalised there. With ``beta > 0`` the KL
term is TRL's (in the loss), not OpenRLHF's per-token KL reward shaping.
"""

from __future__ import annotations

from typing import Any

import torch
from trl import GRPOTrainer

BASELINES = ("none", "prompt")


def reinforce_pp_advantages(
    rewards: torch.Tensor, lengths: torch.Tensor, group_size: int, baseline: str = "none"
) -> torch.Tensor:
    """Token-weighted global whitening of (optionally group-centred) rewards; one value per sequence.

    >>> r = torch.tensor([1.0, 0.0, 2.0, 0.0])
    >>> reinforce_pp_advantages(r, torch.ones(4), group_size=2).round(decimals=4)
    tensor([ 0.3015, -0.9045,  1.5076, -0.9045])
    """
    if baseline not in BASELINES:
        raise ValueError(f"algo.baseline={baseline!r}: valid choices are {', '.join(BASELINES)}")
    rewards = torch.nan_to_num(rewards.float(), nan=0.0)
    if baseline == "prompt":
        grouped = rewards.view(-1, group_size)
        rewards = (grouped - grouped.mean(dim=1, keepdim=True)).view(-1)
    weights = lengths.float().clamp(min=0)
    total = weights.sum().clamp(min=1)
    mean = (weights * rewards).sum() / total
    var = (weights * (rewards - mean) ** 2).sum() / total
    return (rewards - mean) * var.clamp(min=1e-8).rsqrt()


class ReinforcePPTrainer(GRPOTrainer):
    """GRPOTrainer with REINFORCE++ advantages (``baseline``: none | prompt)."""

    group_std_scaled = False  # its advantages replace GRPO's, whatever scale_rewards says

    def __init__(self, *args: Any, baseline: str = "none", **kwargs: Any):
        if baseline not in BASELINES:
            raise ValueError(f"algo.baseline={baseline!r}: valid choices are {', '.join(BASELINES)}")
        self.baseline = baseline
        super().__init__(*args, **kwargs)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        # Keep the gathered (global) rewards: the whitening needs the whole batch.
        self._global_rewards_per_func = super()._calculate_rewards(
            inputs, prompts, completions, completion_ids_list
        )
        return self._global_rewards_per_func

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        weights = self.reward_weights.to(self._global_rewards_per_func.device)
        rewards = (self._global_rewards_per_func * weights.unsqueeze(0)).nansum(dim=1)
        lengths = self.accelerator.gather(out["completion_mask"].sum(dim=1))
        advantages = reinforce_pp_advantages(rewards, lengths, self.num_generations, self.baseline)
        local = out["advantages"].shape[0]
        start = self.accelerator.process_index * local
        out["advantages"] = advantages[start : start + local].to(out["advantages"].dtype)
        return out
