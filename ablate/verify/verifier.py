"""Is a completion's final answer right? Choice letters, math via math-verify, exact strings.

>>> v = Verifier()
>>> v("12+30=42\\nAnswer: 42", "42"), v("\\\\boxed{\\\\frac{1}{2}}", "0.5"), v("Answer: C, A", "AC")
(True, True, True)
>>> v("Answer: A", "AC"), v([{"role": "assistant", "content": "Answer: Paris"}], "paris")
(False, True)
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

from ablate.verify.extract import all_letters, completion_text, is_letter_answer, last_letter, resolve_order
from ablate.verify.extract import extract as find_answer

RULES = ("choice", "sequence", "math", "exact")
MODES = ("auto", *RULES)
log = logging.getLogger(__name__)

# An answer that is only letters: "AC", "A, C", "c"; a lower-case run needs separators ("bad" is a word).
_LETTERS_ONLY = re.compile(r"\s*(?:[A-G](?:[\s,、;]*[A-G])*|[a-g](?:[\s,、;]+[a-g])*)\s*")
# Plain words ("Paris", "分层抽样") are text: math-verify reads "Paris" as P*a*r*i*s, which equals "Sirap".
_WORDS = re.compile(r"[^\W\d_]{2,}(?:[\s'-]+[^\W\d_]+)*")
# Longer "final answers" are prose or attacks, and latex2sympy's time grows with length.
_MAX_MATH_CHARS = 1000
# Beyond these sympy runs for minutes (9^{9^9}, expanding (x+1)^{1000}); off the main thread nothing stops it.
_MAX_EXPONENT, _MAX_SYMBOLIC_EXPONENT, _MAX_FACTORIAL = 10**6, 200, 10**5


def normalise(text: str) -> str:
    """For exact comparison: outer ``$`` and trailing periods dropped, whitespace collapsed, casefolded.

    >>> normalise("  $Hello   World$. ")
    'hello world'
    """
    text = re.sub(r"^[\s$]+|[\s$.。]+$", "", text)
    return re.sub(r"\s+", " ", text).casefold()


def _as_latex(text: str) -> str:
    # math-verify reads latex inside delimiters: bare, "x^2+2x+1" parses to nothing and "2x" to 2.
    return text if "$" in text or "\\(" in text or "\\[" in text else f"${text}$"


@functools.lru_cache(maxsize=16384)
def _parse(text: str, timeout: int | None) -> tuple[Any, ...]:
    # References repeat across a group of completions and an epoch: parse each once.
    return tuple(parse(_as_latex(text), parsing_timeout=timeout))


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
            for a letter reference), one strategy of ``ablate.verify.EXTRACTORS`` or a list of them.
        mode: how to compare. ``choice``: letter sets, order, case and repeats ignored ("CA" == "AC");
            ``sequence``: one letter per blank, in order; ``math``: math-verify equivalence;
            ``exact``: normalised strings; ``auto``: the row's ``answer_type``, else by the reference's
            form (letters -> choice, words -> exact, else math if math-verify reads it, else exact).
        judge: any ``judge(prompt, completion, reference) -> bool`` (e.g. an LLM judge, configured
            by ``_target_``); when given it decides instead of the rules.
        timeout_s: math-verify's limit per parse and comparison. It uses ``signal.alarm``, so off the
            main thread it is off; huge powers and factorials are then refused instead.

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
    ):
        if mode not in MODES:
            raise ValueError(f"verifier.mode={mode!r}: valid choices are {', '.join(MODES)}")
        if judge is not None and not callable(judge):
            raise TypeError(f"verifier.judge={judge!r}: must be callable as judge(prompt, completion, ref)")
        self.extract = "auto" if extract == "auto" else resolve_order(extract)
        self.mode = mode
        self.judge = judge
        self.timeout_s = timeout_s

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
        return self._extract(completion, self.kind(_reference_text(reference), answer_type))

    def _extract(self, completion: Any, kind: str) -> str | None:
        return find_answer(completion, self.extract, letters=kind in ("choice", "sequence"))

    def __call__(
        self, completion: Any, reference: Any, prompt: Any = None, answer_type: str | None = None
    ) -> bool:
        reference = _reference_text(reference)
        if self.judge is not None:
            return bool(self.judge(prompt, completion_text(completion), reference))
        if not reference:
            return False
        try:
            kind = self.kind(reference, answer_type)
            answer = self._extract(completion, kind)
            if answer is None:
                return False
            if kind in ("choice", "sequence"):
                return _letters_equal(answer, reference, ordered=kind == "sequence")
            if kind == "math":
                return self._math_equal(answer, reference)
            return normalise(answer) == normalise(reference)
        # A garbage completion is wrong, not a crash mid-training.
        except (Exception, TimeoutException) as err:
            log.debug("verifier failed on %r vs %r: %r", completion, reference, err)
            return False

    def _timeout(self) -> int | None:
        # signal.alarm takes whole seconds and may only be set from the main thread.
        if not self.timeout_s or threading.current_thread() is not threading.main_thread():
            return None
        return max(1, math.ceil(self.timeout_s))

    def _math_equal(self, answer: str, reference: str) -> bool:
        if normalise(answer) == normalise(reference):
            return True
        if len(answer) > _MAX_MATH_CHARS:
            return False
        timeout = self._timeout()
        gold, pred = _parse(reference, timeout), _parse(answer, timeout)
        if not _has_math(gold) or not pred or _too_big(gold) or _too_big(pred):
            return False
        return bool(verify(list(gold), list(pred), timeout_seconds=timeout))

    def __repr__(self) -> str:
        return (
            f"Verifier(extract={self.extract!r}, mode={self.mode!r}, judge={self.judge!r}, "
            f"timeout_s={self.timeout_s!r})"
        )


def _letters_equal(answer: str, reference: str, ordered: bool) -> bool:
    """Choice letters: as a set, unless ``ordered`` or the reference repeats a letter (one per blank)."""
    want = re.sub(r"[^A-G]", "", reference.upper())
    ordered = ordered or len(set(want)) < len(want)
    if _LETTERS_ONLY.fullmatch(answer):
        got = re.sub(r"[^A-G]", "", answer.upper())
    else:  # "the answer is C because ..." -> the standalone letters, not every capital A-G
        got = all_letters(answer) if ordered else last_letter(answer) or ""
    if ordered:
        return got == want
    return bool(got) and set(got) == set(want)
