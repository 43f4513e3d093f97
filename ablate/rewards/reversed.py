"""Reversed-weights ablation: RLEV's formula on values mirrored by rank across the training set.

The most valuable training question is paid as the least valuable one, the second as the second
least, and so on (ties ordered by a hash of the question id, as in ``ablate.metrics``). The
distribution of rewards is RLEV's exactly, as with ``shuffled``, but the link between a question
and its value is inverted rather than broken: where theory says value moves the policy one way,
reversed values must move it the other.
"""

from __future__ import annotations

import pandas as pd

from ablate.metrics import value_order
from ablate.rewards.shuffled import ShuffledReward
from ablate.verify import Verifier


class ReversedReward(ShuffledReward):
    """RLEV with ``v`` taken from the training question of the mirrored value rank.

    >>> import pandas as pd
    >>> train = pd.DataFrame({"id": ["a", "b", "c"], "value": [0.0, 0.1, 0.2]})
    >>> reward = ReversedReward(alpha=5).fit(train)
    >>> reward(["Answer: 1"] * 3, answer=["1"] * 3, id=["a", "b", "c"], value=[0.0, 0.1, 0.2])
    [2.0, 1.5, 1.0]
    """

    name = "reversed"

    def __init__(self, alpha: float = 10.0, verifier: Verifier | None = None):
        super().__init__(alpha, verifier=verifier)  # no seed: the mirror is fixed by the values

    def fit(self, train: pd.DataFrame) -> ReversedReward:
        order = value_order(train)  # lowest to highest value
        ids = train["id"].astype(str).to_numpy()[order]
        values = train["value"].to_numpy(dtype=float)[order]
        self.assigned = dict(zip(ids, values[::-1].tolist(), strict=True))
        return self
