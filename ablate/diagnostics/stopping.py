"""The policy's stopping decision, read where the decision is made: after each answer line.

For a question with a reference solution that writes several answer lines (``stop_text``, e.g.
the ``checks`` task's answer and two check passes), the policy is teacher-forced through that
text and pi(eos) is read right after each ``Answer: N`` line: the probability that it stops
there rather than going on. Unlike a length, this is a smooth function of the policy, so the
change RL makes to it is measurable question by question (``ablate.report.paired``).

>>> answer_line_ends("Answer: 81\\nCheck: 23+58=81\\nAnswer: 81")
[10, 37]
"""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd

ANSWER_LINE = re.compile(r"Answer:[^\n]*")


def answer_line_ends(text: str) -> list[int]:
    """Character offsets just past each answer line (where the next token decides: stop or go on)."""
    return [m.end() for m in ANSWER_LINE.finditer(text)]


def decision_tokens(tokenizer: Any, text: str) -> tuple[list[int], list[int]]:
    """Token ids of ``text`` plus EOS, and the index of the token that follows each answer line."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, spans = list(enc["input_ids"]), list(enc["offset_mapping"])
    ends = answer_line_ends(text)
    # The deciding token is the first one that starts at or after the line's end (EOS after the last).
    starts = [start for start, _ in spans] + [len(text)]
    return [*ids, tokenizer.eos_token_id], [next(i for i, s in enumerate(starts) if s >= end) for end in ends]


def stop_probabilities(
    model: Any, tokenizer: Any, questions: pd.DataFrame, batch_size: int = 64
) -> pd.DataFrame:
    """One row per question and answer line: ``id, line, p_stop, stop_logit`` (line 1 = the first answer)."""
    from ablate.evaluate import prompt_text
    from ablate.generation import eos_probabilities

    if "stop_text" not in questions:
        raise KeyError("diagnostics.stops needs a 'stop_text' column in the data (data=checks has one)")
    prompts = [prompt_text(p, tokenizer) for p in questions["prompt"]]
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    decisions = [decision_tokens(tokenizer, text) for text in questions["stop_text"]]
    probs = eos_probabilities(
        model,
        prompt_ids,
        [ids for ids, _ in decisions],
        tokenizer.eos_token_id,
        tokenizer.pad_token_id,
        batch_size,
    )
    rows = []
    for qid, (_, positions), row in zip(questions["id"], decisions, probs, strict=True):
        for line, position in enumerate(positions, start=1):
            p = min(max(row[position], 1e-12), 1 - 1e-12)
            rows.append(
                {"id": qid, "line": line, "p_stop": row[position], "stop_logit": math.log(p / (1 - p))}
            )
    return pd.DataFrame(rows, columns=["id", "line", "p_stop", "stop_logit"])


def stops_table(questions: pd.DataFrame, start: pd.DataFrame, end: pd.DataFrame) -> pd.DataFrame:
    """Each question's pi(stop) per answer line before (``*_start``) and after (``*_end``) training,
    beside its value and difficulty: the table a run writes as ``stops.csv``."""
    keys = [c for c in ("id", "value", "shown_value", "difficulty") if c in questions]
    return questions[keys].merge(start.merge(end, on=["id", "line"], suffixes=("_start", "_end")))
