"""Shuffled-weights ablation: RLEV's formula on values permuted across the training set.

The distribution of rewards is RLEV's exactly; only the link between a question and its
value is broken. A gain that survives shuffling is not a value effect.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ablate.rewards.base import RLEVReward
from ablate.verify import Verifier


class ShuffledReward(RLEVReward):
    """RLEV with ``v`` taken from another training question (a seeded permutation).

    >>> import pandas as pd
    >>> train = pd.DataFrame({"id": ["a", "b"], "value": [0.0, 0.2]})
    >>> reward = ShuffledReward(alpha=10, seed=3).fit(train)
    >>> reward(["Answer: 1", "Answer: 1"], answer=["1", "1"], id=["a", "b"], value=[0.0, 0.2])
    [2.0, 1.0]
    """

    name = "shuffled"

    def __init__(self, alpha: float = 10.0, seed: int = 0, verifier: Verifier | None = None):
        super().__init__(alpha, verifier)
        self.seed = seed
        self.assigned: dict[str, float] | None = None  # question id -> the value its reward uses

    def fit(self, train: pd.DataFrame) -> ShuffledReward:
        rng = np.random.default_rng(self.seed)
        values = train["value"].to_numpy(dtype=float)
        self.assigned = dict(zip(train["id"].astype(str), rng.permutation(values).tolist(), strict=True))
        return self

    def values(self, n: int, columns: dict[str, Sequence[Any]]) -> np.ndarray:
        if self.assigned is None:
            raise RuntimeError(
                f"{self.name} reward: call fit(train) first, so the permutation covers the training set"
            )
        if "id" not in columns:
            raise KeyError(f"{self.name} reward: the dataset needs an 'id' column; got {sorted(columns)}")
        missing = [i for i in columns["id"] if str(i) not in self.assigned]
        if missing:
            raise KeyError(
                f"{self.name} reward: question id {missing[0]!r} is not in the training set it was fit on"
            )
        return np.array([self.assigned[str(i)] for i in columns["id"]])
