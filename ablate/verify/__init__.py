"""Answer checking: extract a completion's final answer, compare it with the reference."""

from ablate.verify.extract import EXTRACTORS, completion_text, extract
from ablate.verify.judge import Judge, ReferenceInCompletion
from ablate.verify.verifier import MODES, Verifier

__all__ = ["EXTRACTORS", "MODES", "Judge", "ReferenceInCompletion", "Verifier", "completion_text", "extract"]
