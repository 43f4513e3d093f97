"""Is a completion's final answer right? Math via math-verify, choice letters, exact strings.

>>> v = Verifier()
>>> v("12+30=42\\nAnswer: 42", "42"), v("\\\\boxed{\\\\frac{1}{2}}", "0.5"), v("Answer: C, A", "AC")
(True, True, True)
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

from math_verify import parse, verify

from ablate.verify.extract import check_order, completion_text, extract, last_letter

MODES = ("auto", "math", "choice", "exact")
AUTO_ORDER = ("boxed", "answer_line")
_CHOICE = re.compile(r"^\s*[A-Ga-g](?:[\s,、;]*[A-Ga-g])*\s*$")
# An answer that is only choice letters: "AC", "A, C", "c"; lower-case runs need separators ("bad" is a word).
_LETTERS_ONLY = re.compile(r"^\s*(?:[A-G](?:[\s,、;]*[A-G])*|[a-g](?:[\s,、;]+[a-g])*)\s*$")


def is_choice(reference: str) -> bool:
    return bool(_CHOICE.match(reference))


def choice_set(answer: str) -> frozenset[str]:
    """Letters of a (multiple) choice answer: order, case, separators and repeats ignored."""
    return frozenset(re.sub(r"[^A-G]", "", answer.upper()))


def normalise(text: str) -> str:
    text = text.strip().strip("$").strip().rstrip(".。").strip()
    return re.sub(r"\s+", " ", text).casefold()


def _as_latex(text: str) -> str:
    # math-verify reads latex inside $...$; bare "1/2" or "\frac{1}{2}" needs the delimiters.
    return text if "$" in text or "\\(" in text or "\\[" in text else f"${text}$"


@functools.lru_cache(maxsize=65536)
def _parse(text: str, timeout: int | None) -> tuple:
    return tuple(parse(_as_latex(text), parsing_timeout=timeout))


class Verifier:
    """Extracts a completion's final answer and checks it against the reference.

    ``judge``, if given (any ``judge(prompt, completion, reference) -> bool``, e.g. an LLM judge
    configured by ``_target_``), decides instead of the rules.
    """

    def __init__(
        self,
        extract: str | Sequence[str] = "auto",
        mode: str = "auto",
        judge: Callable[[Any, str, str], bool] | None = None,
        timeout_s: int | None = 5,
    ):
        if mode not in MODES:
            raise ValueError(f"verifier.mode={mode!r}: valid choices are {', '.join(MODES)}")
        self.order = (
            None if extract == "auto" else check_order([extract] if isinstance(extract, str) else extract)
        )
        self.mode = mode
        self.judge = judge
        self.timeout_s = timeout_s

    def kind(self, reference: str, answer_type: str | None = None) -> str:
        """math, choice or exact: the mode, else the row's answer_type, else the reference's form."""
        if self.mode != "auto":
            return self.mode
        if answer_type in MODES[1:]:
            return answer_type
        if is_choice(reference):
            return "choice"
        return "math" if _parse(reference, self._timeout()) else "exact"

    def extract_answer(self, completion: Any, kind: str = "math") -> str | None:
        text = completion_text(completion)
        order = self.order or [*AUTO_ORDER, "last_letter" if kind == "choice" else "last_number"]
        return extract(text, order)

    def __call__(
        self, completion: Any, reference: Any, prompt: Any = None, answer_type: str | None = None
    ) -> bool:
        reference = str(reference).strip()
        if self.judge is not None:
            return bool(self.judge(prompt, completion_text(completion), reference))
        kind = self.kind(reference, answer_type)
        answer = self.extract_answer(completion, kind)
        if answer is None:
            return False
        if kind == "choice":
            # "Answer: the answer is C because ..." -> the standalone letters, not every capital A-G.
            letters = answer if _LETTERS_ONLY.match(answer) else last_letter(answer) or ""
            return bool(letters) and choice_set(letters) == choice_set(reference)
        if kind == "math":
            return self._math_equal(answer, reference)
        return normalise(answer) == normalise(reference)

    def _timeout(self) -> int | None:
        # math-verify times out with signal.alarm, which only the main thread may set.
        if self.timeout_s is None or threading.current_thread() is not threading.main_thread():
            return None
        return max(1, round(self.timeout_s))

    def _math_equal(self, answer: str, reference: str) -> bool:
        timeout = self._timeout()
        try:
            gold, pred = _parse(reference, timeout), _parse(answer, timeout)
            if not gold:
                return normalise(answer) == normalise(reference)
            return bool(pred) and verify(list(gold), list(pred), timeout_seconds=timeout)
        except Exception as err:  # a garbage completion is wrong, never a crash mid-training
            logging.getLogger(__name__).debug("math check failed on %r vs %r: %s", answer, reference, err)
            return False

    def __repr__(self) -> str:
        return f"Verifier(extract={self.order or 'auto'!r}, mode={self.mode!r}, judge={self.judge!r})"
