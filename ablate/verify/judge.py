"""Judges: the hook for model-based grading (the RLEV paper graded answers with an LLM).

A judge is any callable ``judge(prompt, completion, reference) -> bool``; the verifier hands
it the completion's text and the reference as a string, and its verdict replaces the rules.
Configure one by ``_target_``::

    verifier:
      judge:
        _target_: ablate.verify.RuleJudge
        mode: exact

``RuleJudge`` (the verifier's rules, as a judge) and ``ReferenceInCompletion`` (lenient
substring match) are real judges and templates for writing an LLM one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from ablate.verify.verifier import Verifier, normalise


@runtime_checkable
class Judge(Protocol):
    """Decides whether ``completion`` answers ``prompt`` with ``reference``."""

    def __call__(self, prompt: Any, completion: str, reference: str) -> bool: ...


class RuleJudge:
    """The rule-based verifier as a judge: a base for an LLM judge that settles the clear cases first.

    >>> RuleJudge(mode="exact")(None, "Answer: Paris.", "paris")
    True
    """

    def __init__(
        self,
        extract: str | Sequence[str] = "auto",
        mode: str = "auto",
        answer_type: str | None = None,
        timeout_s: float | None = 5,
    ):
        self.verifier = Verifier(extract=extract, mode=mode, timeout_s=timeout_s)
        self.answer_type = answer_type

    def __call__(self, prompt: Any, completion: str, reference: str) -> bool:
        return self.verifier(completion, reference, prompt=prompt, answer_type=self.answer_type)

    def __repr__(self) -> str:
        return f"RuleJudge({self.verifier!r})"


class ReferenceInCompletion:
    """Lenient judge: right if the reference is a whole token of the completion's last ``tail`` chars.

    Case, spacing and outer ``$`` are ignored. It rewards a completion that lists many candidates, so it
    suits grading free-text answers more than being an RL reward.

    >>> judge = ReferenceInCompletion()
    >>> judge(None, "... so the set is {1, 2}.", "{1, 2}"), judge(None, "... so it is 12.", "2")
    (True, False)
    """

    def __init__(self, tail: int = 200):
        self.tail = tail

    def __call__(self, prompt: Any, completion: str, reference: str) -> bool:
        needle = normalise(reference)
        if not needle:
            return False
        # "2" must not count inside "12" or "2.5"; a sentence's final period is fine.
        pattern = rf"(?<![\w.]){re.escape(needle)}(?!\w|\.\d)"
        return re.search(pattern, re.sub(r"\s+", " ", completion[-self.tail :]).casefold()) is not None

    def __repr__(self) -> str:
        return f"ReferenceInCompletion(tail={self.tail})"
