"""Value-noise control (not in the paper): RLEV with ``v`` corrupted by Gaussian noise.

Each question gets one fixed noisy value (seeded by the question id), as a mislabelled
dataset would, rather than fresh noise at every rollout. Sweeping ``sigma`` traces H-Acc
against label quality.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from ablate.rewards.base import RLEVReward
from ablate.verify import Verifier


def question_noise(question_id: str, seed: int) -> float:
    """A standard normal draw fixed by (seed, question id), stable across processes."""
    digest = hashlib.sha256(f"{seed}:{question_id}".encode()).digest()
    return float(np.random.default_rng(int.from_bytes(digest[:8], "little")).standard_normal())


class NoisyValueReward(RLEVReward):
    """RLEV with ``v' = clip(v + sigma * eps_id, 0, 1)``; ``sigma = 0`` is RLEV.

    >>> NoisyValueReward(alpha=10, sigma=0.0)(["Answer: 1"], answer=["1"], value=[0.05], id=["q1"])
    [1.5]
    """

    name = "noisy"

    def __init__(
        self, alpha: float = 10.0, sigma: float = 0.02, seed: int = 0, verifier: Verifier | None = None
    ):
        super().__init__(alpha, verifier)
        if sigma is None or not np.isfinite(sigma) or sigma < 0:
            raise ValueError(f"reward.sigma={sigma!r}: must be a finite number >= 0")
        self.sigma = float(sigma)
        self.seed = seed

    def values(self, n: int, columns: dict[str, Sequence[Any]]) -> np.ndarray:
        values = super().values(n, columns)
        if "id" not in columns:
            raise KeyError(f"noisy reward: the dataset needs an 'id' column; got {sorted(columns)}")
        noise = np.array([question_noise(str(i), self.seed) for i in columns["id"]])
        return np.clip(values + self.sigma * noise, 0.0, 1.0)
