"""Final-answer extraction from a completion, by named strategy.

A strategy maps a completion's text to its final answer, or None when it finds none;
``extract`` tries several in order and keeps the first answer found.

>>> extract("so 12+30=42\\nAnswer: 42.")
'42'
>>> extract("I think (B), no wait: A and C.", reference="AC")
'AC'
>>> extract("【答案】：Ｂ，Ｄ <eoa>", reference="B")
'B,D'
>>> EXTRACTORS["boxed"]("first \\\\boxed{1}, then \\\\boxed{\\\\frac{1}{2}}")
'\\\\frac{1}{2}'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

AUTO_ORDER = ("boxed", "answer_line", "last_number")

# Markdown bold often wraps the marker ("**Answer:** 42", "**Answer**: 42"); "【答案】C" and "【答案】: C"
# (GAOKAO-Bench's own format) or "答案：C" in Chinese exams.
ANSWER_MARK = re.compile(
    r"(?<![A-Za-z])(?:final\s+answer|answer)(?:\s+is)?[\s*]*[:：]|【答案】(?:[ \t*]*[:：])?|答案\s*[:：]",
    re.IGNORECASE,
)
# GAOKAO-Bench ends each answer with "<eoa>" (and the analysis with "<eoe>").
END_OF_ANSWER = re.compile(r"\s*<\s*/?\s*eo[ae]\s*>.*", re.IGNORECASE | re.DOTALL)
# Full-width ASCII (Ｃ，（２）：) as half-width, and the ideographic space as a space.
_HALFWIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
# A minus sign after a word, digit or bracket is subtraction ("5-3"), not part of the number.
_NUMBER = re.compile(r"(?:(?<![\w)\]}])[-−])?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?")
_LATEX_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*(-?\d+)\s*\}\s*\{\s*(\d+)\s*\}")
# Choice letters stand alone (not the A of "Add"); a run joins letters by spaces, commas, slashes, parens
# and the words a hedge uses ("A and C", "A or C", "A和C", "A或C", "A及C"): a hedge reads as several letters.
_SEP = r"(?:[\s,、;&/()（）]|\b(?:and|or)\b|或者|以及|和|或|及|与)*"
LETTER_RUN = re.compile(rf"(?<![A-Za-z])[A-G](?:{_SEP}[A-G](?![A-Za-z]))*(?![A-Za-z])")
_LETTER_ANSWER = re.compile(r"\s*\(?[A-G]\)?(?:[\s,、;]*\(?[A-G]\)?)*\s*")


def halfwidth(text: str) -> str:
    """Full-width ASCII forms as ASCII: ``Ｂ，Ｄ`` -> ``B,D``, ``（２）`` -> ``(2)``; other text unchanged.

    >>> halfwidth("【答案】：Ｂ，Ｄ（２）")
    '【答案】:B,D(2)'
    """
    return text.translate(_HALFWIDTH)


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or TRL's conversational list of messages (the last one's).

    >>> completion_text([{"role": "assistant", "content": "Answer: 7"}])
    'Answer: 7'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list | tuple):
        completion = completion[-1] if completion else None
    if isinstance(completion, dict):
        completion = completion.get("content")
    return "" if completion is None else str(completion)


def clean_answer(answer: str) -> str:
    answer = answer.strip().strip("*").strip().rstrip(".。").strip()
    for left, right in (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if answer.startswith(left) and answer.endswith(right) and len(answer) >= len(left) + len(right):
            inner = answer[len(left) : len(answer) - len(right)].strip("$")
            if "$" not in inner:  # "$5$ or $6$" is two spans, not one
                answer = inner
    return answer.strip().rstrip(".。").strip()


def boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{...}`` (or ``\\fbox{...}``); nested braces allowed.

    >>> boxed("\\\\boxed{x^{2}}")
    'x^{2}'
    """
    for match in reversed(list(_BOXED.finditer(text))):
        depth = 1
        for i in range(match.end(), len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                return text[match.end() : i].strip() or None
    return None


def answer_line(text: str) -> str | None:
    """The rest of the line after the last ``Answer:`` (``Final answer:``, ``答案：``, ``【答案】``).

    Trailing periods and surrounding ``$`` are dropped; after a marker alone on its line
    ("**Final Answer:**", then a display formula) the answer is the next non-empty line.

    >>> answer_line("work...\\nFinal answer: $\\\\frac{3}{4}$.")
    '\\\\frac{3}{4}'
    """
    marks = list(ANSWER_MARK.finditer(text))
    if not marks:
        return None
    for line in text[marks[-1].end() :].split("\n"):
        if answer := clean_answer(line):
            return answer
    return None


def last_number(text: str) -> str | None:
    """The last number: integers, negatives, decimals, ``3/4`` (also ``\\frac{3}{4}``); no thousands commas.

    >>> last_number("we sold 1,234 units at -2.5 each, so 3/4 of them")
    '3/4'
    """
    matches = _NUMBER.findall(_LATEX_FRAC.sub(r"\1/\2", text))
    return re.sub(r"[,\s]", "", matches[-1]).replace("−", "-") if matches else None


def last_letter(text: str) -> str | None:
    """The last standalone choice letter A-G, or run of them (``A, C`` and ``A and C`` -> ``AC``).

    >>> last_letter("It is not (B); the answer is A and C.")
    'AC'
    """
    runs = LETTER_RUN.findall(text)
    return re.sub(r"[^A-G]", "", runs[-1]) if runs else None


def all_letters(text: str) -> str:
    """Every standalone choice letter in order, for one-letter-per-blank answers ("1. C 2. D" -> "CD")."""
    return "".join(re.sub(r"[^A-G]", "", run) for run in LETTER_RUN.findall(text))


EXTRACTORS: dict[str, Callable[[str], str | None]] = {
    "boxed": boxed,
    "answer_line": answer_line,
    "last_number": last_number,
    "last_letter": last_letter,
}


def is_letter_answer(reference: str) -> bool:
    """Is the reference only choice letters A-G ("C", "AC", "A, C", "(B)")?"""
    return bool(_LETTER_ANSWER.fullmatch(reference))


def resolve_order(strategy: str | Sequence[str]) -> list[str]:
    """The strategies to try, in order: ``auto`` is boxed, answer_line, last_number; ValueError if unknown."""
    if strategy == "auto":
        strategy = AUTO_ORDER
    order = [strategy] if isinstance(strategy, str) else list(strategy)
    unknown = [name for name in order if name not in EXTRACTORS]
    if unknown or not order:
        raise ValueError(
            f"verifier.extract={strategy!r}: valid choices are auto, {', '.join(EXTRACTORS)} "
            "or a list of them"
        )
    return order


def extract(
    completion: Any,
    strategy: str | Sequence[str] = "auto",
    reference: str | None = None,
    letters: bool | None = None,
) -> str | None:
    """The answer of the first strategy in ``strategy`` that finds one; None if none does.

    For a letter answer (``letters``, by default: the reference is letters A-G) ``last_number``
    becomes ``last_letter``, since a number never answers a multiple-choice question.
    """
    order = resolve_order(strategy)
    if letters is None:
        letters = reference is not None and is_letter_answer(reference)
    if letters:
        order = ["last_letter" if name == "last_number" else name for name in order]
    text = halfwidth(completion_text(completion))
    for name in order:
        if (found := EXTRACTORS[name](text)) and (found := END_OF_ANSWER.sub("", found).strip()):
            return found
    return None
