"""Noisy values from weak labels: RLEV with ``v`` read off a coarse difficulty label.

The paper maps primary / junior / senior / university / PhD to 1 / 2 / 4 / 6 / 8 points out of 100.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ablate.rewards.base import RLEVReward
from ablate.verify import Verifier

PAPER_LABELS = {"primary": 0.01, "junior": 0.02, "senior": 0.04, "university": 0.06, "phd": 0.08}


class WeakLabelReward(RLEVReward):
    """RLEV with ``v = labels[difficulty]`` (labels matched case-insensitively).

    >>> WeakLabelReward(alpha=10)(["Answer: 1"], answer=["1"], difficulty=["PhD"])
    [1.8]
    """

    name = "weak_labels"

    def __init__(
        self,
        alpha: float = 10.0,
        labels: Mapping[str, float] | None = None,
        column: str = "difficulty",
        verifier: Verifier | None = None,
    ):
        super().__init__(alpha, verifier)
        self.labels = {str(k).casefold(): float(v) for k, v in (labels or PAPER_LABELS).items()}
        bad = {k: v for k, v in self.labels.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise ValueError(f"reward.labels: values must lie in [0, 1], got {bad}")
        self.column = column

    def values(self, n: int, columns: dict[str, Sequence[Any]]) -> np.ndarray:
        if self.column not in columns:
            raise KeyError(
                f"weak_labels reward: the dataset needs a {self.column!r} column; got {sorted(columns)}"
            )
        out = []
        for label in columns[self.column]:
            key = str(label).casefold()
            if key not in self.labels:
                raise KeyError(
                    f"weak_labels reward: difficulty {label!r} has no value; "
                    f"valid labels (reward.labels) are {', '.join(self.labels)}"
                )
            out.append(self.labels[key])
        return np.array(out)
