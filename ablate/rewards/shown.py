"""RLEV on the value a prompt shows: ``v`` from ``shown_value`` rather than the true ``value``.

With ``data=checks data.points=shuffled`` the prompts print points permuted within each exam;
this variant pays by those printed points while H-Acc keeps scoring the true value, so the policy
can only learn the value it reads, not the one it is judged by (a negative control of
docs/positive_control.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ablate.rewards.base import RLEVReward


class ShownValueReward(RLEVReward):
    """RLEV with ``v = shown_value``.

    >>> reward = ShownValueReward(alpha=10)
    >>> reward(["Answer: 3"] * 2, answer=["3", "3"], value=[0.2, 0.01], shown_value=[0.01, 0.2])
    [1.1, 2.0]
    """

    name = "rlev_shown"

    def fit(self, train: pd.DataFrame) -> ShownValueReward:
        # Fail before the model loads, not at the first reward call.
        if "shown_value" not in train.columns:
            raise ValueError(
                f"reward={self.name} needs a 'shown_value' column, which data=checks writes "
                f"(data.points: shown | hidden | shuffled); this data has {sorted(train.columns)}"
            )
        return self

    def values(self, n: int, columns: dict[str, Sequence[Any]]) -> np.ndarray:
        if "shown_value" not in columns:
            have = sorted(columns)
            raise KeyError(
                f"{self.name}: the dataset has no 'shown_value' column (data=checks has one); got {have}"
            )
        return np.asarray(columns["shown_value"], dtype=float)
