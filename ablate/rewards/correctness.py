"""The RLVR baseline: 1 for a correct answer, 0 otherwise, whatever the question is worth."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ablate.rewards.base import ValueScaledReward


class CorrectnessReward(ValueScaledReward):
    """``r = 1[correct]``.

    >>> CorrectnessReward()(["Answer: 3", "Answer: 4"], answer=["3", "3"], value=[0.2, 0.2])
    [1.0, 0.0]
    """

    name = "correctness"
    per_question = False

    def scales(self, n: int, columns: dict[str, Sequence[Any]]) -> np.ndarray:
        return np.ones(n)
