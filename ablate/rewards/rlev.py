"""RLEV, the paper's reward: ``(1 + min(alpha * v, 1)) * 1[correct]`` (alpha = 10 in the paper).

>>> from ablate.rewards import RLEVReward
>>> RLEVReward(alpha=10)(["\\\\boxed{7}"] * 2, answer=["7", "7"], value=[0.02, 0.2])
[1.2, 2.0]
"""

from ablate.rewards.base import RLEVReward

__all__ = ["RLEVReward"]
