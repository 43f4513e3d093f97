"""Reward variants: one file each, one ``conf/reward/*.yaml`` each, dispatched by ``_target_``."""

from ablate.rewards.base import RLEVReward, ValueScaledReward, rlev_scale
from ablate.rewards.correctness import CorrectnessReward
from ablate.rewards.multiplicative import MultiplicativeReward
from ablate.rewards.noisy import NoisyValueReward
from ablate.rewards.predicted import PredictedValueReward
from ablate.rewards.reversed import ReversedReward
from ablate.rewards.shuffled import ShuffledReward
from ablate.rewards.uniform import UniformReward
from ablate.rewards.weak_labels import WeakLabelReward

__all__ = [
    "CorrectnessReward",
    "MultiplicativeReward",
    "NoisyValueReward",
    "PredictedValueReward",
    "RLEVReward",
    "ReversedReward",
    "ShuffledReward",
    "UniformReward",
    "ValueScaledReward",
    "WeakLabelReward",
    "rlev_scale",
]
