"""Answers by slot: one answer per sub-question, in order, as exams ask for them.

GAOKAO-Bench asks for ``（1）【答案】 A <eoa> （2）【答案】 B <eoa>``: one answer mark per sub-question.
An English reading passage with three questions has the reference ``CAB``: three slots, each
checked on its own. This module finds the answers; the verifier compares them slot by slot.

>>> slot_answers("（1）【答案】 C <eoa>\\n（2）【答案】 A <eoa>", 2)
['C', 'A']
>>> slot_answers("Answer: 56. B 57. C 58. A", 3)
['B', 'C', 'A']
>>> read_letters("B，D"), read_letters("A和D"), read_letters("C. the garden")
('BD', 'AD', 'C')
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ablate.verify.extract import (
    ANSWER_MARK,
    END_OF_ANSWER,
    LETTER_RUN,
    all_letters,
    clean_answer,
    halfwidth,
    last_letter,
)

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
# A sub-question number opening an item: "(2)", "（2）", "2.", "58.", "2、", "2)"; not "2.5" or "1,234".
_ITEM_NUMBER = re.compile(r"(?:^|(?<=[\s;,，；]))(?:\(\s*(\d{1,3})\s*\)|(\d{1,3})\s*[.、):](?!\d))")
# A letter run that opens an answer ("C. the garden", "(B)", "选 D", "B, D"): it decides over later letters.
_LEADING_RUN = re.compile(
    rf"[\s(\[【*\"'“:]*(?:选项|选|options?\b|choices?\b)?[\s(\[]*({LETTER_RUN.pattern})"
)
# An option label, as a completion that copies the options out writes them: "A. ", "B、", "C："
_OPTION_LABEL = re.compile(r"(?<![A-Za-z])[A-G]\s*[.、:](?!\d)")
_MAX_ITEM_CHARS = 80  # a numbered answer is short; a numbered step of reasoning is not
# Only letters and separators: "AC", "A, C", "c"; a lower-case run needs separators ("bad" is a word).
_LETTERS_ONLY = re.compile(r"\s*(?:[A-G](?:[\s,、;/]*[A-G])*|[a-g](?:[\s,、;/]+[a-g])*)\s*[.。]?\s*")


def read_letters(answer: str) -> str:
    """The choice letters an answer gives, upper-case, in order: the letters of an all-letter answer,
    else the run that opens the answer, else the last run (separators: see ``extract._SEP``).

    >>> read_letters("a, c"), read_letters("The answer is C"), read_letters("A, not B")
    ('AC', 'C', 'A')
    >>> read_letters("A. ①② B. ①③ C. ②④ D. ③④"), read_letters("B. A wheelchair user")
    ('ABCD', 'B')
    """
    answer = halfwidth(answer)
    if _LETTERS_ONLY.fullmatch(answer):
        return re.sub(r"[^A-G]", "", answer.upper())
    if len(_OPTION_LABEL.findall(answer)) > 1:  # "A. ①② B. ①③ C. ②④": every option, not a choice
        return all_letters(answer)
    if leading := _LEADING_RUN.match(answer):
        return re.sub(r"[^A-G]", "", leading.group(1))
    return last_letter(answer) or ""


def box_contents(text: str) -> list[tuple[int, str]]:
    """``(position, content)`` of every complete ``\\boxed{...}``, in order."""
    found = []
    for match in _BOXED.finditer(text):
        depth = 1
        for i in range(match.end(), len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                found.append((match.start(), text[match.end() : i]))
                break
    return found


def _first_line(segment: str) -> str:
    for line in segment.split("\n"):
        if answer := clean_answer(line):
            return answer
    return ""


def marked_segments(text: str, sources: Sequence[str] = ("answer_line", "boxed")) -> list[str]:
    """The text after each answer mark (``答案``, ``Answer:``), up to ``<eoa>`` or the next mark; where
    no mark is written, the content of each ``\\boxed{}``. ``sources`` limits which marks count.

    >>> marked_segments("（1）【答案】 C <eoa> （2）【答案】: A <eoa>")
    ['C', 'A']
    """
    text = halfwidth(text)
    if "answer_line" in sources and (marks := list(ANSWER_MARK.finditer(text))):
        ends = [m.start() for m in marks[1:]] + [len(text)]
        return [
            END_OF_ANSWER.sub("", text[m.end() : end]).strip() for m, end in zip(marks, ends, strict=True)
        ]
    if "boxed" in sources:
        return [END_OF_ANSWER.sub("", content).strip() for _, content in box_contents(text)]
    return []


def numbered_items(segment: str) -> list[tuple[int, str]]:
    """``(number, answer)`` of each numbered item: ``1. C 2. D`` -> ``[(1, 'C'), (2, 'D')]``.

    >>> numbered_items("(1) C (2) A；(3) B")
    [(1, 'C'), (2, 'A'), (3, 'B')]
    """
    numbers = list(_ITEM_NUMBER.finditer(segment))
    ends = [m.start() for m in numbers[1:]] + [len(segment)] if numbers else []
    return [
        (int(m.group(1) or m.group(2)), clean_answer(segment[m.end() : end]).strip(";,，；").strip())
        for m, end in zip(numbers, ends, strict=True)
    ]


def _one_per_slot(segment: str, n: int) -> list[str] | None:
    """The ``n`` answers of one segment that holds them all: numbered items, or ``n`` bare letters."""
    items = numbered_items(segment)
    # Short items only: numbered reasoning ("1. because ...") after the last answer is not a list of answers.
    if len(items) == n and all(0 < len(answer) <= _MAX_ITEM_CHARS for _, answer in items):
        return [answer for _, answer in items]
    line = _first_line(segment)
    if _LETTERS_ONLY.fullmatch(line):
        letters = re.sub(r"[^A-G]", "", line.upper())
        if len(letters) == n:
            return list(letters)
    return None


def slot_answers(
    text: str, n: int, sources: Sequence[str] = ("answer_line", "boxed")
) -> list[str | None] | None:
    """One answer per slot, in order, for an item with ``n`` slots; None if they cannot be told apart.

    In order of preference: the last mark holds all ``n`` answers (``Answer: 1. C 2. D``, ``【答案】 C D``);
    one mark per slot (``（1）【答案】 C <eoa> （2）【答案】 D <eoa>``; with more marks than slots, the last
    ``n``); fewer marks than slots fill the first slots, the rest are unanswered (None). Without any mark,
    numbered lines that are one letter each (``56. B``), else the letters of the last letter run.
    """
    text = halfwidth(text)
    segments = marked_segments(text, sources)
    if segments:
        if (together := _one_per_slot(segments[-1], n)) is not None:
            return list(together)
        answers: list[str | None] = [_first_line(s) for s in segments[-n:]]
        return answers + [None] * (n - len(answers))
    lines = [items[0][1] for line in text.split("\n") if len(items := numbered_items(line.strip())) == 1]
    letter_lines = [answer for answer in lines if _LETTERS_ONLY.fullmatch(answer)]
    if len(letter_lines) == n:
        return letter_lines
    letters = last_letter(text)
    return list(letters) if letters and len(letters) == n else None
