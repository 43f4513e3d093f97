"""Uniform scaling ablation: every correct answer earns the training set's mean RLEV scale.

It pays as much in total as RLEV does but ignores which question is worth what, which
separates "bigger rewards" from "value-aware rewards".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ablate.rewards.base import ValueScaledReward, check_alpha, rlev_scale
from ablate.verify import Verifier


class UniformReward(ValueScaledReward):
    """``r = E_train[1 + min(alpha * v, 1)] * 1[correct]``, the mean computed in ``fit``.

    >>> import pandas as pd
    >>> reward = UniformReward(alpha=10).fit(pd.DataFrame({"value": [0.02, 0.2]}))
    >>> round(reward.constant, 9)
    1.6
    """

    name = "uniform"
    per_question = False

    def __init__(self, alpha: float = 10.0, verifier: Verifier | None = None):
        super().__init__(verifier)
        self.alpha = check_alpha(alpha)
        self.constant: float | None = None

    def fit(self, train: pd.DataFrame) -> UniformReward:
        self.constant = float(rlev_scale(train["value"].to_numpy(), self.alpha).mean())
        return self

    def scales(self, n: int, columns: dict[str, Sequence[Any]]) -> np.ndarray:
        if self.constant is None:
            raise RuntimeError(
                "uniform reward: call fit(train) first, so the constant is the training set's mean"
            )
        return np.full(n, self.constant)
