"""JSON / JSONL exam files with a field mapping: the paper's released format and any other.

The paper's release (``sarosavo/RLEV``) is a list of ``query, label, score, total``;
``conf/data/rlev_json.yaml`` maps those names, ``conf/data/jsonl.yaml`` is the template for
any other file. ``query`` may be a plain (possibly already chat-formatted) string or a list of
chat messages; both are kept as they are.

>>> loader = TableExams(path="exams.jsonl", fields={"prompt": "query", "answer": "label"})
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ablate.data.base import ExamLoader, existing_path
from ablate.data.schema import CANONICAL, BadRowError, build_table


def read_records(path: Path) -> Iterator[tuple[str, Any]]:
    """``(where, record)`` for a JSON list (``file:item N``) or JSONL (``file:LINE``) file."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as err:
            raise BadRowError(f"{path}:{err.lineno}", f"invalid JSON: {err.msg}") from None
        for i, item in enumerate(items):
            yield f"{path}:item {i}", item
        return
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield f"{path}:{lineno}", json.loads(line)
        except json.JSONDecodeError as err:
            yield f"{path}:{lineno}", BadRowError(f"{path}:{lineno}", f"invalid JSON: {err.msg}")


@dataclass
class TableExams(ExamLoader):
    """Exam rows from JSON/JSONL files, renaming source fields to canonical ones."""

    path: str = ""  # JSON list or JSONL file of training (or all) rows
    test_path: str | None = None  # optional file of test rows: its rows get split=test
    fields: dict[str, str] = field(default_factory=dict)  # canonical name -> source field name
    total: float | None = None  # exam total for rows without one (None: rows must carry it)
    exam_id: str | None = None  # exam id for rows without one (None: each such row is its own exam)

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = sorted(set(self.fields) - set(CANONICAL) - {"answer_type", "predicted_score"})
        if unknown:
            raise ValueError(
                f"data.fields has unknown canonical name(s) {unknown}: valid choices are "
                f"{', '.join([*CANONICAL, 'answer_type', 'predicted_score'])}"
            )

    def _rows(self, path: Path, split: str | None) -> Iterator[tuple[str, Mapping[str, Any] | BadRowError]]:
        source_of = self.fields
        for where, record in read_records(path):
            if isinstance(record, BadRowError):
                yield where, record
                continue
            if not isinstance(record, dict):
                yield where, BadRowError(where, f"expected a JSON object, got {record!r:.60}")
                continue
            row = {k: v for k, v in record.items() if k not in source_of.values()}
            row.update({canon: record.get(src) for canon, src in source_of.items()})
            if row.get("total") is None and self.total is not None:
                row["total"] = self.total
            if row.get("exam_id") in (None, ""):
                row["exam_id"] = self.exam_id if self.exam_id is not None else where
            row.setdefault("id", where)
            if split is not None:
                row["split"] = split
            yield where, row

    def read(self) -> pd.DataFrame:
        if not self.path:
            raise ValueError("data.path is not set: give the JSON/JSONL file, e.g. data.path=exams.jsonl")
        sources = [(existing_path(self.path), "train" if self.test_path else None)]
        if self.test_path:
            sources.append((existing_path(self.test_path, "data.test_path"), "test"))
        records = ((w, r) for p, s in sources for w, r in self._rows(p, s))
        return build_table(records, str(self.path), self.on_bad_row)
