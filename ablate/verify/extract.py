"""Final-answer extraction from a completion, by named strategy.

>>> extract("so 12+30=42\\nAnswer: 42", ["boxed", "answer_line", "last_number"])
'42'
>>> EXTRACTORS["last_letter"]("I pick A and C.")
'AC'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

_ANSWER_LINE = re.compile(r"(?:final\s+answer|answer|答案)\s*(?:is)?\s*[:：]\s*(.*)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:\s*/\s*\d+)?")
# A choice letter stands alone: not inside a word ("Add", "BC" in "ABC News" is still letters).
_LETTER_RUN = re.compile(r"(?<![A-Za-z])([A-G](?:\s*(?:,|、|and|和|&)?\s*[A-G](?![A-Za-z]))*)(?![A-Za-z])")


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or TRL's conversational list of messages (last one)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list | tuple) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content") or "")
    if isinstance(completion, dict):
        return str(completion.get("content") or "")
    return "" if completion is None else str(completion)


def boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` or ``\\fbox{...}``, nested braces allowed."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    for start in reversed(starts):
        depth = 1
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                return text[start:i].strip()
    return None


def answer_line(text: str) -> str | None:
    """The rest of the line after the last ``Answer:`` (``Final answer:``, ``答案：``)."""
    matches = _ANSWER_LINE.findall(text)
    if not matches:
        return None
    answer = matches[-1].strip().rstrip("。.").strip().strip("$").strip()
    return answer or None


def last_number(text: str) -> str | None:
    """The last number: integers, negatives, decimals, ``3/4``; thousands separators removed."""
    matches = _NUMBER.findall(text)
    return re.sub(r"[,\s]", "", matches[-1]) if matches else None


def last_letter(text: str) -> str | None:
    """The last standalone choice letter or run of letters (``A, C`` -> ``AC``)."""
    matches = _LETTER_RUN.findall(text)
    return re.sub(r"[^A-G]", "", matches[-1]) if matches else None


EXTRACTORS: dict[str, Callable[[str], str | None]] = {
    "boxed": boxed,
    "answer_line": answer_line,
    "last_number": last_number,
    "last_letter": last_letter,
}


def check_order(order: Sequence[str]) -> list[str]:
    unknown = [name for name in order if name not in EXTRACTORS]
    if unknown or not order:
        raise ValueError(
            f"verifier.extract={list(order)!r}: valid choices are auto or a list of {', '.join(EXTRACTORS)}"
        )
    return list(order)


def extract(text: str, order: Sequence[str]) -> str | None:
    """The first answer found by the strategies in ``order``; None if none finds one."""
    for name in order:
        found = EXTRACTORS[name](text)
        if found:
            return found
    return None
