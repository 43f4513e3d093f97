"""Answer checking: extract a completion's final answer, compare it with the reference.

>>> from ablate.verify import Verifier
>>> Verifier()("so x = 1/2\\nAnswer: $\\\\frac{1}{2}$", "0.5")
True
"""

# The function extract() stays in ablate.verify.extract: exported here it would hide that module's name.
from ablate.verify.extract import AUTO_ORDER, EXTRACTORS, completion_text
from ablate.verify.judge import Judge, ReferenceInCompletion, RuleJudge
from ablate.verify.llm_judge import JudgeUnavailable, LLMJudge
from ablate.verify.verifier import MODES, Verifier

__all__ = [
    "AUTO_ORDER",
    "EXTRACTORS",
    "MODES",
    "Judge",
    "JudgeUnavailable",
    "LLMJudge",
    "ReferenceInCompletion",
    "RuleJudge",
    "Verifier",
    "completion_text",
]
