"""Noisy values from a predictor: RLEV with ``v = predicted score / exam total``.

The paper fine-tuned a model to predict a question's points (Pearson 0.91 to the truth).
Scores come from a dataset column (precomputed, e.g. by a batch job) or from a predictor
given as a Hydra ``_target_``: any callable ``predictor(prompts: list) -> list[float]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ablate.rewards.base import RLEVReward
from ablate.verify import Verifier


class PredictedValueReward(RLEVReward):
    """RLEV with ``v = clip(predicted_score / total, 0, 1)``.

    >>> PredictedValueReward(alpha=10)(["Answer: 1"], answer=["1"], predicted_score=[3.0], total=[100])
    [1.3]
    """

    name = "predicted"

    def __init__(
        self,
        alpha: float = 10.0,
        column: str = "predicted_score",
        predictor: Callable[[list[Any]], Sequence[float]] | None = None,
        verifier: Verifier | None = None,
    ):
        super().__init__(alpha, verifier)
        self.column = column
        self.predictor = predictor

    def values(self, n: int, columns: dict[str, Sequence[Any]]) -> np.ndarray:
        if self.predictor is not None:
            prompts = columns.get("prompts")
            if prompts is None:
                raise KeyError(
                    "predicted reward: a predictor needs the prompts (TRL passes them as 'prompts')"
                )
            scores = np.asarray(self.predictor(list(prompts)), dtype=float)
        elif self.column in columns:
            scores = np.asarray(columns[self.column], dtype=float)
        else:
            raise KeyError(
                f"predicted reward: the dataset has no {self.column!r} column (reward.column) and no "
                f"reward.predictor is set; columns are {sorted(columns)}"
            )
        if "total" not in columns:
            raise KeyError(f"predicted reward: the dataset needs a 'total' column; got {sorted(columns)}")
        return np.clip(scores / np.asarray(columns["total"], dtype=float), 0.0, 1.0)
