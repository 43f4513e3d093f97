"""What every reward variant shares: ``r = scale(x) * credit``, the credit 1 for a right answer and 0
for a wrong one (the fraction of its slots right with ``verifier.partial=true``).

A variant is a picklable callable in TRL's reward signature ``(completions, **columns)``;
it differs from the others only in how it computes the scale of a correct answer. Variants
that need the training set (a mean, a permutation) learn it in ``fit`` before training.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ablate.verify import Verifier


def rlev_scale(value: np.ndarray | float, alpha: float) -> np.ndarray:
    """The paper's clipped value scale ``s(x) = 1 + min(alpha * v, 1)``, in [1, 2]."""
    return 1.0 + np.minimum(alpha * np.asarray(value, dtype=float), 1.0)


def check_alpha(alpha: float) -> float:
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        value = float("nan")
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"reward.alpha={alpha!r}: must be a finite number >= 0 (the paper uses 10)")
    return value


class ValueScaledReward:
    """Base reward: a correct completion earns ``scale``, a wrong one 0.

    Subclasses implement ``scales(n, columns)``: one scale per completion, from the dataset
    columns TRL passes alongside (``answer``, ``value``, ``difficulty``, ``id``, ...).
    """

    name = "value_scaled"
    per_question = True  # whether the scale differs between questions (a per-group std would remove it)

    def __init__(self, verifier: Verifier | None = None):
        self.verifier = verifier if verifier is not None else Verifier()
        # TRL names reward columns in its logs by the callable's __name__.
        self.__name__ = self.name

    def fit(self, train: pd.DataFrame) -> ValueScaledReward:
        """Learn what the variant needs from the training set (nothing, by default)."""
        return self

    def scales(self, n: int, columns: dict[str, Sequence[Any]]) -> np.ndarray:
        raise NotImplementedError

    def credit(self, completions: Sequence[Any], columns: dict[str, Sequence[Any]]) -> np.ndarray:
        """Each completion's credit in [0, 1], the batch at once (an LLM judge sends it concurrently)."""
        return np.asarray(
            self.verifier.score_many(
                completions, columns["answer"], columns.get("prompts"), columns.get("answer_type"),
                log_metric=columns.get("log_metric"),
            ),
            dtype=float,
        )  # fmt: skip

    def __call__(self, completions: Sequence[Any], **columns: Any) -> list[float]:
        if "answer" not in columns:
            raise KeyError(f"{self.name}: the dataset needs an 'answer' column; got {sorted(columns)}")
        scale = np.asarray(self.scales(len(completions), columns), dtype=float)
        credit = self.credit(completions, columns)
        log_metric: Callable[[str, float], None] | None = columns.get("log_metric")
        if log_metric is not None:
            log_metric("reward/scale_mean", float(scale.mean()))
            log_metric("reward/correct_rate", float((credit == 1.0).mean()))
        return (scale * credit).tolist()

    def __repr__(self) -> str:
        state = {
            k: v for k, v in vars(self).items() if k not in ("verifier", "__name__") and not k.startswith("_")
        }
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in state.items())})"


class RLEVReward(ValueScaledReward):
    """RLEV: ``r = (1 + min(alpha * v, 1)) * 1[correct]`` with ``v`` the question's value.

    Variants that only change where ``v`` comes from override ``values``.

    >>> reward = RLEVReward(alpha=10)
    >>> reward(["Answer: 4", "Answer: 5"], answer=["4", "4"], value=[0.02, 0.02])
    [1.2, 0.0]
    """

    name = "rlev"

    def __init__(self, alpha: float = 10.0, verifier: Verifier | None = None):
        super().__init__(verifier)
        self.alpha = check_alpha(alpha)

    def values(self, n: int, columns: dict[str, Sequence[Any]]) -> np.ndarray:
        if "value" not in columns:
            raise KeyError(f"{self.name}: the dataset needs a 'value' column; got {sorted(columns)}")
        return np.asarray(columns["value"], dtype=float)

    def scale_of(self, values: np.ndarray) -> np.ndarray:
        return rlev_scale(values, self.alpha)

    def scales(self, n: int, columns: dict[str, Sequence[Any]]) -> np.ndarray:
        return self.scale_of(self.values(n, columns))
