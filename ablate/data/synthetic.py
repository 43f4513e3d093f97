"""Synthetic exams a tiny model can learn: multi-term additions with per-question points.

Each exam holds a few dozen questions whose integer points sum to the exam total. Points are
log-normally skewed (harder questions tend to be worth more) so that, as in the RLEV paper's
data, the mean value v = points / total is about 0.02-0.03 and only a few percent exceed 0.1.
A question adds ``k`` numbers; ``k`` sets its difficulty label, and the worked solution writes
one partial sum per line, so longer working makes a correct answer easier.

>>> df = SyntheticExams(num_exams=4, seed=0).read()
>>> sorted(df.groupby("exam_id")["value"].sum().round(9).unique().tolist())
[1.0]
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ablate.data.base import ExamLoader
from ablate.data.schema import build_table

# Difficulty labels by number of terms, named as the paper's weak-label tiers.
DIFFICULTY = {2: "primary", 3: "junior", 4: "senior", 5: "university", 6: "phd"}
PROMPT = "Add: {terms}\nShow each partial sum, then 'Answer: N'.\n"
# Pearson correlation of the paper's value predictor with the true scores.
PREDICTOR_CORRELATION = 0.91
# Warm-start solution styles (ablate.warmstart): numbers added per line of working.
STYLES = {"full": 1, "pairs": 2, "direct": 0}
TERMS = re.compile(r"Add: ([\d +]+?)(?: \(|\n)")


def prompt_terms(prompt: str) -> list[int]:
    """The numbers an ``Add: a + b ...`` prompt asks to add."""
    found = TERMS.match(prompt)
    if found is None:
        raise ValueError(f"not an 'Add: a + b' prompt: {prompt[:60]!r}")
    return [int(t) for t in found.group(1).split(" + ")]


def integer_points(weights: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` into integer points >= 1 proportional to ``weights`` (largest remainder)."""
    spare = total - len(weights)
    if spare < 0:
        raise ValueError(f"cannot give {len(weights)} questions at least 1 point out of {total}")
    share = spare * weights / weights.sum()
    points = np.floor(share).astype(int)
    leftover = spare - points.sum()
    points[np.argsort(-(share - points), kind="stable")[:leftover]] += 1
    return points + 1


def worked_solution(terms: list[int], per_line: int = 1) -> str:
    """Partial sums adding ``per_line`` more numbers a line (0: no working), then ``Answer: N``."""
    lines, running, rest = [], terms[0], terms[1:]
    while per_line and rest:
        added, rest = rest[:per_line], rest[per_line:]
        total = running + sum(added)
        lines.append("+".join(map(str, [running, *added])) + f"={total}")
        running = total
    return "\n".join([*lines, f"Answer: {sum(terms)}"])


@dataclass
class SyntheticExams(ExamLoader):
    """Deterministic synthetic exams; the embedded default data set."""

    num_exams: int = 60  # exams (each one paper with its own total)
    questions_per_exam: tuple[int, int] = (30, 50)  # inclusive range of questions per exam
    totals: tuple[int, ...] = (100, 150)  # exam totals drawn from
    terms: tuple[int, int] = (2, 6)  # inclusive range of numbers to add (difficulty)
    max_operand: int = 50  # operands are drawn from 1..max_operand
    points_sigma: float = 1.2  # log-normal spread of points within an exam (skew of v)
    difficulty_weight: float = 0.25  # how much harder questions are worth more (log scale per term)
    seed: int = 0  # the whole data set is a function of this seed
    styles = tuple(STYLES)  # how a warm start may write a solution (ablate.warmstart)

    @staticmethod
    def styled_solution(prompt: str, style: str) -> str:
        """The worked solution of the question in ``style``: ``full``, ``pairs`` or ``direct``."""
        return worked_solution(prompt_terms(prompt), STYLES[style])

    @staticmethod
    def written_style(completion: str) -> str:
        """Which style a completion is written in, from its shape."""
        steps = [line for line in completion.splitlines() if "=" in line]
        if not steps:
            return "direct"
        return "full" if all(line.count("+") == 1 for line in steps) else "pairs"

    def read(self) -> pd.DataFrame:
        rng = np.random.default_rng(self.seed)
        lo_q, hi_q = self.questions_per_exam
        lo_k, hi_k = self.terms
        if not (1 <= lo_q <= hi_q and 2 <= lo_k <= hi_k <= max(DIFFICULTY)):
            raise ValueError(
                f"data.questions_per_exam={self.questions_per_exam} and data.terms={self.terms}: "
                f"need 1 <= low <= high and terms within 2..{max(DIFFICULTY)}"
            )
        records = []
        for exam in range(self.num_exams):
            n = int(rng.integers(lo_q, hi_q + 1))
            total = int(rng.choice(self.totals))
            ks = rng.integers(lo_k, hi_k + 1, size=n)
            log_w = self.points_sigma * rng.standard_normal(n) + self.difficulty_weight * (ks - ks.mean())
            points = integer_points(np.exp(log_w), total)
            for j in range(n):
                terms = rng.integers(1, self.max_operand + 1, size=int(ks[j])).tolist()
                records.append(
                    {
                        "id": f"syn-{self.seed}-{exam:03d}-{j:02d}",
                        "prompt": PROMPT.format(terms=" + ".join(map(str, terms))),
                        "answer": str(sum(terms)),
                        "score": int(points[j]),
                        "total": total,
                        "exam_id": f"syn-{self.seed}-{exam:03d}",
                        "difficulty": DIFFICULTY[int(ks[j])],
                        "solution": worked_solution(terms),
                        "answer_type": "math",
                    }
                )
        df = build_table(((r["id"], r) for r in records), f"synthetic(seed={self.seed})", self.on_bad_row)
        df["predicted_score"] = self._predicted_scores(df["score"].to_numpy(), rng)
        return df

    @staticmethod
    def _predicted_scores(score: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        # A stand-in value predictor: true points plus noise sized for the paper's Pearson r.
        noise_sd = score.std() * np.sqrt(1 / PREDICTOR_CORRELATION**2 - 1)
        return np.clip(score + noise_sd * rng.standard_normal(len(score)), 0, None)
