"""Is a completion's final answer right? Choice letters, math via math-verify, exact strings.

>>> v = Verifier()
>>> v("12+30=42\\nAnswer: 42", "42"), v("\\\\boxed{\\\\frac{1}{2}}", "0.5"), v("Answer: C, A", "AC")
(True, True, True)
>>> v("Answer: A", "AC"), v([{"role": "assistant", "content": "Answer: Paris"}], "paris")
(False, True)

Items with several answer slots (``answer_type="sequence"``) are checked slot by slot; with
``partial=True`` ``score`` gives the fraction of points earned:

>>> two = "（1）【答案】 C <eoa>\\n（2）【答案】 B <eoa>"
>>> Verifier(partial=True).score(two, "CA", answer_type="sequence")
0.5
"""

from __future__ import annotations

import functools
import logging
import math
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

import sympy
from math_verify import parse, verify
from math_verify.errors import TimeoutException

from ablate.verify.extract import (
    ANSWER_MARK,
    clean_answer,
    completion_text,
    halfwidth,
    is_letter_answer,
    resolve_order,
)
from ablate.verify.extract import extract as find_answer
from ablate.verify.slots import box_contents, marked_segments, read_letters, slot_answers

RULES = ("choice", "sequence", "math", "exact")
MODES = ("auto", *RULES)
log = logging.getLogger(__name__)

# Plain words ("Paris", "分层抽样") are text: math-verify reads "Paris" as P*a*r*i*s, which equals "Sirap".
_WORDS = re.compile(r"[^\W\d_]{2,}(?:[\s'-]+[^\W\d_]+)*")
# Longer "final answers" are prose or attacks, and latex2sympy's time grows with length.
_MAX_MATH_CHARS = 1000
# Beyond these sympy runs for minutes (9^{9^9}, expanding (x+1)^{1000}); off the main thread nothing stops it.
_MAX_EXPONENT, _MAX_SYMBOLIC_EXPONENT, _MAX_FACTORIAL = 10**6, 200, 10**5
# GAOKAO-Bench's Physics multi-select: a right answer earns full marks, a right non-empty subset half.
SUBSET_CREDIT = 0.5


def normalise(text: str) -> str:
    """For exact comparison: outer ``$`` and trailing periods dropped, whitespace collapsed, casefolded.

    >>> normalise("  $Hello   World$. ")
    'hello world'
    """
    text = re.sub(r"^[\s$]+|[\s$.。]+$", "", text)
    return re.sub(r"\s+", " ", text).casefold()


def _as_latex(text: str) -> str:
    # math-verify reads latex inside delimiters: bare, "x^2+2x+1" parses to nothing and "2x" to 2.
    # A \boxed{} is its own delimiter: math-verify reads boxes, and the last one for several.
    delimited = any(mark in text for mark in ("$", "\\(", "\\[", "\\boxed"))
    return text if delimited else f"${text}$"


@functools.lru_cache(maxsize=16384)
def _parse(text: str, timeout: int | None) -> tuple[Any, ...]:
    # References repeat across a group of completions and an epoch: parse each once.
    return tuple(parse(_as_latex(text), parsing_timeout=timeout))


@functools.lru_cache(maxsize=1024)
def _read_completion(text: str, timeout: int | None) -> tuple[Any, ...]:
    # math-verify's own extraction of free-form text (LaTeX and expression targets), as TRL's accuracy
    # reward uses it; a group often repeats a completion.
    return tuple(parse(text, parsing_timeout=timeout))


def _is_collection(parsed: Sequence[Any]) -> bool:
    return bool(parsed) and isinstance(parsed[0], sympy.FiniteSet | sympy.Tuple)


def _has_math(parsed: Sequence[Any]) -> bool:
    # math-verify falls back to the matched string when sympy cannot read it; a string alone is no math.
    return any(not isinstance(item, str) for item in parsed)


def _number_above(value: Any, bound: float) -> bool:
    try:
        return bool(abs(sympy.N(value, 5)) > bound)
    except (TypeError, ValueError, ArithmeticError):
        return True  # complex or unknown size: do not risk it


def _too_big(parsed: Sequence[Any]) -> bool:
    """Would comparing this make sympy compute a power tower, a huge expansion or factorial?"""
    for item in parsed:
        if not isinstance(item, sympy.Basic):
            continue
        # Bottom-up, so an exponent is only evaluated once its own inner powers are known to be small.
        for node in sympy.postorder_traversal(item):
            if isinstance(node, sympy.Pow) and node.exp.is_number:
                bound = _MAX_EXPONENT if node.base.is_number else _MAX_SYMBOLIC_EXPONENT
                if _number_above(node.exp, bound):
                    return True
            elif (
                isinstance(node, sympy.factorial | sympy.gamma)
                and node.args[0].is_number
                and _number_above(node.args[0], _MAX_FACTORIAL)
            ):
                return True
    return False


def _reference_text(reference: Any) -> str:
    if reference is None:
        return ""
    if isinstance(reference, list | tuple):  # option letters per blank, as some exam files store them
        return "".join(str(part).strip() for part in reference)
    return str(reference).strip()


class Verifier:
    """Extracts a completion's final answer and checks it against the reference.

    Args:
        extract: ``auto`` (boxed, then ``Answer:`` line, then the last number, or the last letter
            for a letter reference; for a math reference without an answer mark, math-verify reads
            the whole completion), one strategy of ``ablate.verify.EXTRACTORS`` or a list of them.
        mode: how to compare. ``choice``: letter sets, order, case and repeats ignored ("CA" == "AC");
            ``sequence``: one letter per slot, in order; ``math``: math-verify equivalence;
            ``exact``: normalised strings; ``auto``: the row's ``answer_type``, else by the reference's
            form (letters -> choice, words -> exact, else math if math-verify reads it, else exact).
        judge: any ``judge(prompt, completion, reference) -> bool`` (e.g. ``LLMJudge``, configured
            by ``_target_``); when given it decides instead of the rules.
        timeout_s: math-verify's limit per parse and comparison. It uses ``signal.alarm``, so off the
            main thread it is off; huge powers and factorials are then refused instead.
        partial: ``score`` gives the fraction of the item's points earned (slots right; half for a
            right subset of a multi-select answer) instead of all-or-nothing.

    Never raises on a completion: an unreadable answer is a wrong one.

    >>> Verifier(mode="exact")("Answer: $Hello   World$.", "hello world")
    True
    """

    def __init__(
        self,
        extract: str | Sequence[str] = "auto",
        mode: str = "auto",
        judge: Callable[[Any, str, str], bool] | None = None,
        timeout_s: float | None = 5,
        partial: bool = False,
    ):
        if mode not in MODES:
            raise ValueError(f"verifier.mode={mode!r}: valid choices are {', '.join(MODES)}")
        if judge is not None and not callable(judge):
            raise TypeError(f"verifier.judge={judge!r}: must be callable as judge(prompt, completion, ref)")
        if not isinstance(partial, bool):
            raise ValueError(f"verifier.partial={partial!r}: valid choices are true, false")
        self.extract = "auto" if extract == "auto" else resolve_order(extract)
        self.mode = mode
        self.judge = judge
        self.timeout_s = timeout_s
        self.partial = partial

    def kind(self, reference: str, answer_type: str | None = None) -> str:
        """The comparison for this reference: the mode, else the row's ``answer_type``, else by its form.

        An ``answer_type`` that is not one of choice, sequence, math, exact is ignored.
        """
        if self.mode != "auto":
            return self.mode
        if answer_type in RULES:
            return answer_type
        if is_letter_answer(reference):
            return "choice"
        if _WORDS.fullmatch(reference):
            return "exact"
        try:
            return "math" if _has_math(_parse(reference, self._timeout())) else "exact"
        except Exception:
            return "exact"

    def extract_answer(
        self, completion: Any, reference: Any = None, answer_type: str | None = None
    ) -> str | None:
        """The completion's final answer as the verifier reads it for this reference, or None.

        >>> Verifier().extract_answer("The answer is (C).", "C")
        'C'
        """
        if reference is None:
            return find_answer(completion, self.extract)
        kind = self.kind(_reference_text(reference), answer_type)
        text = halfwidth(completion_text(completion))
        if kind == "math" and self.extract == "auto" and (marked := self._marked_math(text)) is None:
            read = _read_completion(text, self._timeout())
            return str(read[-1]) if read else None
        if kind == "math" and self.extract == "auto":
            return marked
        return find_answer(text, self.extract, letters=kind in ("choice", "sequence"))

    def __call__(
        self, completion: Any, reference: Any, prompt: Any = None, answer_type: str | None = None
    ) -> bool:
        """Is the answer wholly right (every slot)? With a judge, the judge's verdict."""
        if self.judge is not None:
            return bool(self.judge(prompt, completion_text(completion), _reference_text(reference)))
        return self._fraction(completion, reference, answer_type) == 1.0

    def score(
        self, completion: Any, reference: Any, prompt: Any = None, answer_type: str | None = None
    ) -> float:
        """The credit in [0, 1]: the fraction of points earned if ``partial``, else 1.0 or 0.0.

        >>> Verifier().score("Answer: A", "AC"), Verifier(partial=True).score("Answer: A", "AC")
        (0.0, 0.5)
        """
        if self.judge is not None:
            return float(self(completion, reference, prompt=prompt, answer_type=answer_type))
        fraction = self._fraction(completion, reference, answer_type)
        return fraction if self.partial else float(fraction == 1.0)

    def score_many(
        self,
        completions: Sequence[Any],
        references: Sequence[Any],
        prompts: Sequence[Any] | None = None,
        answer_types: Sequence[str | None] | None = None,
        log_metric: Callable[[str, float], None] | None = None,
    ) -> list[float]:
        """``score`` for a batch. A judge with ``judge_many`` (``LLMJudge``) gets the whole batch at once
        (concurrent requests); ``log_metric("judge/failures", n)`` reports the items it failed on.
        """
        n = len(completions)
        prompts = list(prompts) if prompts is not None else [None] * n
        types = list(answer_types) if answer_types is not None else [None] * n
        judge_many = getattr(self.judge, "judge_many", None)
        if judge_many is None:
            return [
                self.score(c, r, prompt=p, answer_type=t)
                for c, r, p, t in zip(completions, references, prompts, types, strict=True)
            ]
        before = getattr(self.judge, "failures", 0)
        items = [
            (p, completion_text(c), _reference_text(r))
            for c, r, p in zip(completions, references, prompts, strict=True)
        ]
        verdicts = judge_many(items)
        if log_metric is not None:
            log_metric("judge/failures", float(getattr(self.judge, "failures", 0) - before))
        return [float(bool(v)) for v in verdicts]

    def _fraction(self, completion: Any, reference: Any, answer_type: str | None) -> float:
        """The fraction of the item's points the rules give: slots right, or a multi-select subset's half."""
        ref = _reference_text(reference)
        if not ref:
            return 0.0
        try:
            kind = self.kind(ref, answer_type)
            text = halfwidth(completion_text(completion))
            if (slots := _slots(reference, ref, kind)) is not None:
                return self._slots_fraction(text, slots)
            return self._one(text, ref, kind)
        # A garbage completion is wrong, not a crash mid-training.
        except (Exception, TimeoutException) as err:
            log.debug("verifier failed on %r vs %r: %r", completion, reference, err)
            return 0.0

    def _sources(self) -> list[str]:
        return ["answer_line", "boxed"] if self.extract == "auto" else list(self.extract)

    def _slots_fraction(self, text: str, slots: list[str]) -> float:
        answers = slot_answers(text, len(slots), self._sources())
        if answers is None:
            return 0.0
        right = 0.0
        for answer, ref in zip(answers, slots, strict=True):
            if answer is not None:
                right += self._compare(answer, ref, self.kind(ref))
        return right / len(slots)

    def _one(self, text: str, reference: str, kind: str) -> float:
        if kind == "math" and self.extract == "auto":
            marked = self._marked_math(text)
            return float(
                self._math_read(text, reference) if marked is None else self._math_equal(marked, reference)
            )
        answer = find_answer(text, self.extract, letters=kind in ("choice", "sequence"))
        return 0.0 if answer is None else self._compare(answer, reference, kind)

    def _compare(self, answer: str, reference: str, kind: str) -> float:
        """One answer against one reference: 1.0, 0.0, or a multi-select subset's credit."""
        if kind in ("choice", "sequence"):
            return _letters_credit(read_letters(answer), reference)
        if kind == "math":
            return float(self._math_equal(answer, reference))
        return float(normalise(answer) == normalise(reference))

    def _marked_math(self, text: str) -> str | None:
        """The answer after the last answer mark, unless a box follows it (then math-verify reads them).

        >>> Verifier()._marked_math("\\\\boxed{200} ... Final Answer: $10,455$")
        '10,455'
        """
        marks = list(ANSWER_MARK.finditer(text))
        boxes = box_contents(text)
        if not marks or (boxes and boxes[-1][0] > marks[-1].start()):
            return None
        segment = marked_segments(text, ["answer_line"])[-1]
        for line in segment.split("\n"):
            if answer := clean_answer(line):
                return answer
        return None

    def _timeout(self) -> int | None:
        # signal.alarm takes whole seconds and may only be set from the main thread.
        if not self.timeout_s or threading.current_thread() is not threading.main_thread():
            return None
        return max(1, math.ceil(self.timeout_s))

    def _math_equal(self, answer: str, reference: str) -> bool:
        if normalise(answer) == normalise(reference):
            return True
        timeout = self._timeout()
        # A long answer is prose ("The final answer is $5$. I hope ..."): math-verify finds the answer in it;
        # read as one formula, latex2sympy's time would grow with its length.
        read = _read_completion if len(answer) > _MAX_MATH_CHARS else _parse
        return self._verify(_parse(reference, timeout), read(answer, timeout))

    def _math_read(self, text: str, reference: str) -> bool:
        """math-verify reads the completion; several boxes answer a single reference by the last one.

        A reference that is a set or tuple is compared with all boxes as a whole (``\\boxed{1}, \\boxed{2}``
        is ``{1, 2}``); a single value with the last box, as the completion's correction of itself.
        """
        timeout = self._timeout()
        gold = _parse(reference, timeout)
        boxes = box_contents(text)
        if len(boxes) > 1 and not _is_collection(gold):
            return self._math_equal(boxes[-1][1], reference)
        return self._verify(gold, _read_completion(text, timeout))

    def _verify(self, gold: tuple[Any, ...], pred: tuple[Any, ...]) -> bool:
        # A reference sympy cannot read is still compared, as math-verify's normalised string.
        if not gold or not pred or _too_big(gold) or _too_big(pred):
            return False
        return bool(verify(list(gold), list(pred), timeout_seconds=self._timeout()))

    def __repr__(self) -> str:
        return (
            f"Verifier(extract={self.extract!r}, mode={self.mode!r}, judge={self.judge!r}, "
            f"timeout_s={self.timeout_s!r}, partial={self.partial!r})"
        )


def _slots(reference: Any, text: str, kind: str) -> list[str] | None:
    """The reference's slots when it has several: a list reference, or one letter per slot."""
    if isinstance(reference, list | tuple) and len(reference) > 1:
        return [str(part).strip() for part in reference]
    letters = re.sub(r"[^A-G]", "", text.upper())
    repeated = kind == "choice" and len(set(letters)) < len(letters)  # "CDBC": one letter per blank
    if (kind == "sequence" or repeated) and len(letters) > 1:
        return list(letters)
    return None


def _letters_credit(got: str, reference: str) -> float:
    """Choice letters as a set: 1.0 if equal, ``SUBSET_CREDIT`` for a right non-empty part of a
    multi-select reference, else 0.0 (a hedge over a single answer earns nothing).

    >>> _letters_credit("CA", "AC"), _letters_credit("A", "AC"), _letters_credit("AB", "A")
    (1.0, 0.5, 0.0)
    """
    want, got_set = set(re.sub(r"[^A-G]", "", reference.upper())), set(got)
    if got_set == want and want:
        return 1.0
    return SUBSET_CREDIT if len(want) > 1 and got_set and got_set < want else 0.0
