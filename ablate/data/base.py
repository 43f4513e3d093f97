"""What every exam loader shares: reading rows, checking them, splitting by exam."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ablate.data.schema import ON_BAD_ROW

SPLITS = ("train", "test")


@dataclass
class ExamLoader(ABC):
    """Base of the ``data=`` loaders: ``load()`` gives the canonical table with a ``split`` column."""

    test_fraction: float = 0.1  # share of questions (whole exams) held out for evaluation
    split_seed: int = 0  # which exams go to the test split
    on_bad_row: str = "error"  # error: stop at the first bad row; skip: drop and report them

    def __post_init__(self) -> None:
        if self.on_bad_row not in ON_BAD_ROW:
            raise ValueError(
                f"data.on_bad_row={self.on_bad_row!r}: valid choices are {', '.join(ON_BAD_ROW)}"
            )
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"data.test_fraction={self.test_fraction}: must lie in [0, 1)")

    @abstractmethod
    def read(self) -> pd.DataFrame:
        """All valid rows in canonical form (see ``ablate.data.schema.build_table``)."""

    def load(self) -> pd.DataFrame:
        return split_by_exam(self.read(), self.test_fraction, self.split_seed)


def existing_path(path: str | Path, key: str = "data.path") -> Path:
    """The path as given, or an error that names the config key to fix."""
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise FileNotFoundError(f"{key}={path!s}: no such file or directory (cwd: {Path.cwd()})")
    return resolved


def _exam_order(exam_ids: list[str], seed: int) -> list[str]:
    # Hash-based order: stable across pandas versions and independent of row order.
    def key(exam: str) -> str:
        return hashlib.sha256(f"{seed}:{exam}".encode()).hexdigest()

    return sorted(exam_ids, key=key)


def split_by_exam(df: pd.DataFrame, test_fraction: float, seed: int) -> pd.DataFrame:
    """Assign ``split`` so that no exam has questions in both train and test.

    Rows that already carry a split keep it (and must not share an exam across splits);
    otherwise whole exams go to test, in a seeded order, until ``test_fraction`` of the
    questions is reached.
    """
    df = df.copy()
    given = df["split"].notna() if "split" in df else pd.Series(False, index=df.index)
    if given.all():
        bad = sorted(set(df["split"]) - set(SPLITS))
        if bad:
            raise ValueError(f"split column has {bad}: valid choices are {', '.join(SPLITS)}")
        mixed = df.groupby("exam_id")["split"].nunique()
        mixed = mixed[mixed > 1]
        if len(mixed):
            raise ValueError(f"exam {mixed.index[0]!r} has questions in both train and test splits")
        return df
    if given.any():
        raise ValueError(
            "the split column is set on some rows but not on others: give it for all rows or none"
        )
    sizes = df.groupby("exam_id", sort=False).size()
    target = test_fraction * len(df)
    test_exams: set[str] = set()
    held = 0
    for exam in _exam_order(list(sizes.index), seed):
        if held >= target:
            break
        test_exams.add(exam)
        held += int(sizes[exam])
    df["split"] = np.where(df["exam_id"].isin(test_exams), "test", "train")
    return df
