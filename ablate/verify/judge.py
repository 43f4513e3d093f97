"""The hook for a model-based judge (the RLEV paper judged answers with an LLM).

A judge is any callable ``judge(prompt, completion, reference) -> bool``; give it to the
verifier by ``_target_``, e.g. ``verifier.judge={_target_: my_pkg.LLMJudge, model: ...}``.
``ReferenceInCompletion`` is a real, simple judge and a template for writing one.
"""

from __future__ import annotations

from typing import Any, Protocol

from ablate.verify.verifier import normalise


class Judge(Protocol):
    def __call__(self, prompt: Any, completion: str, reference: str) -> bool: ...


class ReferenceInCompletion:
    """Lenient judge: right if the normalised reference appears in the completion's last ``tail`` chars.

    >>> ReferenceInCompletion()(None, "... so the set is {1, 2}.", "{1, 2}")
    True
    """

    def __init__(self, tail: int = 200):
        self.tail = tail

    def __call__(self, prompt: Any, completion: str, reference: str) -> bool:
        return normalise(reference) in normalise(completion[-self.tail :])
