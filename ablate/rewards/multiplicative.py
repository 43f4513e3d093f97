"""Multiplicative ablation: ``(1 + alpha * v) * 1[correct]``, RLEV without the clip."""

from __future__ import annotations

import numpy as np

from ablate.rewards.base import RLEVReward


class MultiplicativeReward(RLEVReward):
    """Unclipped value scaling; a question worth 30% of its exam earns 4 at alpha = 10.

    >>> MultiplicativeReward(alpha=10)(["Answer: 1"], answer=["1"], value=[0.3])
    [4.0]
    """

    name = "multiplicative"

    def scale_of(self, values: np.ndarray) -> np.ndarray:
        return 1.0 + self.alpha * values
