"""The canonical exam row every loader produces, and the checks that guard it.

A row is ``id, prompt, answer, score, total, value, exam_id`` plus optional ``difficulty``
and ``split``; ``value = score / total`` unless the source gives it. Extra columns a loader
keeps (``predicted_score``, say) ride along untouched so reward variants can read them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

log = logging.getLogger(__name__)

REQUIRED = ("prompt", "answer", "score", "total", "exam_id")
CANONICAL = ("id", "prompt", "answer", "score", "total", "value", "exam_id", "difficulty", "split")
ON_BAD_ROW = ("error", "skip")
OnBadRow = Literal["error", "skip"]


class BadRowError(ValueError):
    """A source row that cannot become an exam question; the message names file and line."""

    def __init__(self, where: str, reason: str):
        super().__init__(where, reason)  # both in args, so the error copies and pickles
        self.where = where
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass
class SkipReport:
    """What ``on_bad_row=skip`` left out, so nothing is dropped silently."""

    source: str
    skipped: list[BadRowError] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.source}: skipped {len(self.skipped)} bad row(s)\n{listing(self.skipped)}"


def listing(errors: list[BadRowError], shown: int = 10) -> str:
    """The first ``shown`` bad rows, one per line, and how many more there are."""
    lines = [f"  {err}" for err in errors[:shown]]
    if len(errors) > shown:
        lines.append(f"  ... and {len(errors) - shown} more")
    return "\n".join(lines)


class BadRowsError(BadRowError):
    """Every bad row of a source (``on_bad_row=error``), in one error; ``where`` is the first one's."""

    def __init__(self, source: str, errors: list[BadRowError]):
        super().__init__(errors[0].where, errors[0].reason)
        self.source, self.errors = source, errors

    def __str__(self) -> str:
        return (
            f"{self.source}: {len(self.errors)} bad row(s); fix them or set data.on_bad_row=skip "
            f"to leave them out:\n{listing(self.errors)}"
        )


def _number(raw: Mapping[str, Any], key: str) -> float:
    if key not in raw or raw[key] is None or raw[key] == "":
        raise ValueError(f"missing {key!r}")
    value = raw[key]
    if isinstance(value, bool):
        raise ValueError(f"{key!r} is not a number: {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key!r} is not a number: {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{key!r} is not finite: {value!r}")
    return number


def canonical_row(raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Check one source row and return it in canonical form.

    ``where`` names the row for errors, e.g. ``"exams.jsonl:12"``.

    >>> canonical_row({"prompt": "1+1?", "answer": "2", "score": 3, "total": 150,
    ...                "exam_id": "e1"}, "x.jsonl:1")["value"]
    0.02
    """
    try:
        prompt = raw.get("prompt")
        if prompt is None or (
            isinstance(prompt, str | list) and not (prompt.strip() if isinstance(prompt, str) else prompt)
        ):
            raise ValueError("missing 'prompt'")
        if not isinstance(prompt, str | list):
            raise ValueError(f"'prompt' must be text or a list of chat messages, got {type(prompt).__name__}")
        answer = raw.get("answer")
        answer = "" if answer is None else str(answer).strip()
        if not answer:
            raise ValueError("empty 'answer'")
        score = _number(raw, "score")
        total = _number(raw, "total")
        if total <= 0:
            raise ValueError(f"'total' must be > 0, got {total:g}")
        if score < 0:
            raise ValueError(f"'score' must be >= 0, got {score:g}")
        if score > total:
            raise ValueError(f"'score' {score:g} is larger than 'total' {total:g}")
        value = _number(raw, "value") if raw.get("value") is not None else score / total
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"'value' must lie in [0, 1], got {value:g}")
        exam_id = raw.get("exam_id")
        if exam_id is None or str(exam_id) == "":
            raise ValueError("missing 'exam_id'")
    except ValueError as err:
        raise BadRowError(where, str(err)) from None
    row = dict(raw)
    row.update(
        id=str(raw.get("id") or where),
        prompt=prompt,
        answer=answer,
        score=score,
        total=total,
        value=value,
        exam_id=str(exam_id),
        difficulty=raw.get("difficulty"),
        split=raw.get("split"),
    )
    return row


def build_table(
    records: Iterable[tuple[str, Mapping[str, Any] | BadRowError]],
    source: str,
    on_bad_row: OnBadRow = "error",
) -> pd.DataFrame:
    """Turn ``(where, raw_row)`` pairs into the canonical DataFrame.

    With ``on_bad_row="error"`` the bad rows raise one :class:`BadRowsError` naming each; with ``"skip"``
    bad rows are counted, logged and kept in ``df.attrs["skip_report"]``. A reader that could
    not parse a row passes the :class:`BadRowError` in place of the row, under the same policy.
    """
    if on_bad_row not in ON_BAD_ROW:
        raise ValueError(f"on_bad_row={on_bad_row!r}: valid choices are {', '.join(ON_BAD_ROW)}")
    report = SkipReport(source)
    rows = []
    for where, raw in records:
        try:
            if isinstance(raw, BadRowError):
                raise raw
            rows.append(canonical_row(raw, where))
        except BadRowError as err:
            report.skipped.append(err)
    if report.skipped and on_bad_row == "error":
        raise BadRowsError(source, report.skipped)
    if report.skipped:
        log.warning("%s", report)
    if not rows:
        raise ValueError(f"{source}: no valid exam rows" + (f" ({report})" if report.skipped else ""))
    chat = [isinstance(r["prompt"], list) for r in rows]
    if any(chat) and not all(chat):
        odd = next(r for r, c in zip(rows, chat, strict=True) if c != chat[0])
        kinds = ("chat messages", "text") if chat[0] else ("text", "chat messages")
        raise ValueError(
            f"{odd['id']}: prompt is {kinds[1]} but earlier prompts are {kinds[0]}; use one format"
        )
    df = pd.DataFrame(rows)
    extra = [c for c in df.columns if c not in CANONICAL]
    df = df[list(CANONICAL) + extra]
    duplicated = df["id"][df["id"].duplicated()]
    if len(duplicated):
        raise ValueError(f"{source}: duplicate question id {duplicated.iloc[0]!r}")
    df.attrs["skip_report"] = report
    return df
