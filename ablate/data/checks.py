"""Valued exams with a stop-or-check decision: a task on which a question's value can change what RL learns.

Each question prints its points the way exam papers do, and its solution has a real stopping
decision: after the first answer line the solver may end, or go on with a check pass that
works the sum out step by step and restates (and so can revise) the answer::

    Add: 3 + 8 + 5 + 9 (6 points)
    Answer: 24
    Check: 3+8=11
    11+5=16
    16+9=25
    Answer: 25

Questions come in two kinds, drawn independently of their points by default:

- ``easy``: two one-digit numbers. The first answer is a recalled fact and right; a check can
  only introduce an error (the warm start's checks slip now and then), so stopping is the
  better bet.
- ``hard``: four one-digit numbers. Written at once the answer is a guess, right about half
  the time; the check's working (one small addition a line) makes it right, so going on is
  the better bet.

Value is the paper's skewed ``points / total`` (log-normal points within each exam; every exam
is worth ``total`` points so the printed points are proportional to value). ``points`` chooses
what the prompt shows: ``shown``, ``hidden`` (a negative control), or ``shuffled`` (points
permuted within each exam, the same permutation in the prompt and in ``shown_value``; ``value``
stays the true one). ``stop_text`` is the reference solution with two checks, whose answer lines
are the decision points ``ablate.diagnostics.stopping`` reads the policy's stop probability at.

>>> df = ValuedChecks(num_exams=2, seed=0).read()
>>> df["prompt"].iloc[0], sorted(df["difficulty"].unique())
('Add: 6 + 3 (1 point)\\n', ['easy', 'hard'])
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ablate.data.base import ExamLoader
from ablate.data.schema import build_table
from ablate.data.synthetic import integer_points, prompt_terms

POINTS = ("shown", "hidden", "shuffled")
STYLES = {"stop": 0, "check": 1, "check_twice": 2}  # warm-start solution styles: check passes written
# difficulty -> (numbers to add, smallest, largest)
KINDS = {"easy": (2, 1, 9), "hard": (4, 1, 9)}


def check_pass(terms: list[int], slip: int = 0) -> str:
    """One check: partial sums line by line (the last one off by ``slip``), then the answer they give."""
    lines, running = [], terms[0]
    for i, term in enumerate(terms[1:], start=2):
        running += term + (slip if i == len(terms) else 0)
        lines.append(f"{running - term - (slip if i == len(terms) else 0)}+{term}={running}")
    return "Check: " + "\n".join(lines) + f"\nAnswer: {running}"


def solution(terms: list[int], checks: int, first: int | None = None, slip: int = 0) -> str:
    """The first answer (``first``, else the sum), then ``checks`` check passes that work the sum out
    and restate it (the second adds the numbers in reverse order; the last one's final line is off by
    ``slip``, and its answer with it)."""
    parts = [f"Answer: {sum(terms) if first is None else first}"]
    order = [terms if i % 2 == 0 else terms[::-1] for i in range(checks)]
    parts += [check_pass(t, slip if i == checks - 1 else 0) for i, t in enumerate(order)]
    return "\n".join(parts)


@dataclass
class ValuedChecks(ExamLoader):
    """Synthetic exams whose questions print their points and can be checked (see the module docstring)."""

    num_exams: int = 60  # exams (each one paper worth ``total`` points)
    questions_per_exam: tuple[int, int] = (40, 60)  # inclusive range of questions per exam
    total: int = 100  # points per exam
    points_sigma: float = 1.5  # log-normal spread of points within an exam: mean v 0.02, 1.1% above 0.1
    hard_share: float = 0.5  # share of hard questions
    value_difficulty_correlation: float = 0.0  # correlation of log points with being hard (0: independent)
    points: str = "shown"  # shown | hidden | shuffled: what the prompt prints
    first_error: float = 0.5  # warm start: hard questions' solutions whose first answer is off (a guess)
    check_error: float = 0.15  # warm start: easy questions' checked solutions whose last check slips
    kinds: dict[str, list[int]] = field(default_factory=lambda: {k: list(v) for k, v in KINDS.items()})
    seed: int = 0  # the whole data set is a function of this seed
    styles = tuple(STYLES)  # how a warm start may write a solution (ablate.warmstart)

    def styled_solution(self, prompt: str, style: str) -> str:
        """The solution of the question with the style's number of check passes.

        The warm start imitates a solver whose first answer to a hard question is a guess (off in
        ``first_error`` of the solutions, whether a check follows or not, so stopping says nothing
        about it) that a check revises, and whose checks of an easy, recalled sum can slip (the last
        check's final partial sum off in ``check_error`` of them, its answer following it). Which
        solutions err is fixed by a hash of the prompt and style.
        """
        terms, checks = prompt_terms(prompt), STYLES[style]
        draw = int(hashlib.sha256(f"{prompt}|{style}".encode()).hexdigest()[:12], 16)
        chance, off = draw % 10_000 / 10_000, 1 + draw // 10_000 % 3
        sign = 1 if draw // 30_000 % 2 else -1
        if len(terms) > 2 and chance < self.first_error:
            return solution(terms, checks, first=max(0, sum(terms) + sign * off))
        if len(terms) == 2 and checks and chance < self.check_error:
            return solution(terms, checks, slip=sign * off)
        return solution(terms, checks)

    @staticmethod
    def written_style(completion: str) -> str:
        """How many check passes a completion writes: stop (none), check (one), check_twice (more)."""
        return {0: "stop", 1: "check"}.get(completion.count("Check:"), "check_twice")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.points not in POINTS:
            raise ValueError(f"data.points={self.points!r}: valid choices are {', '.join(POINTS)}")
        if not -1.0 <= self.value_difficulty_correlation <= 1.0:
            raise ValueError(
                f"data.value_difficulty_correlation={self.value_difficulty_correlation}: must lie in [-1, 1]"
            )
        if not 0.0 <= self.hard_share <= 1.0:
            raise ValueError(f"data.hard_share={self.hard_share}: must lie in [0, 1]")
        if sorted(self.kinds) != sorted(KINDS):
            raise ValueError(
                f"data.kinds: needs exactly the kinds {', '.join(KINDS)}, got {sorted(self.kinds)}"
            )

    def read(self) -> pd.DataFrame:
        rng = np.random.default_rng(self.seed)
        permute = np.random.default_rng([self.seed, 1]).permutation  # its own stream: the same questions
        lo, hi = self.questions_per_exam
        if not 1 <= lo <= hi:
            raise ValueError(f"data.questions_per_exam={self.questions_per_exam}: need 1 <= low <= high")
        rho, records = self.value_difficulty_correlation, []
        for exam in range(self.num_exams):
            n = int(rng.integers(lo, hi + 1))
            z = rng.standard_normal(n)
            points = integer_points(np.exp(self.points_sigma * z), self.total)
            # Hard when a latent score correlated rho with log points is in its top ``hard_share``.
            latent = rho * z + np.sqrt(1 - rho**2) * rng.standard_normal(n)
            hard = (
                latent >= np.quantile(latent, 1 - self.hard_share) if self.hard_share > 0 else latent > np.inf
            )
            shown = permute(points) if self.points == "shuffled" else points
            for j in range(n):
                kind = "hard" if hard[j] else "easy"
                count, low, high = self.kinds[kind]
                terms = rng.integers(low, high + 1, size=int(count)).tolist()
                records.append(self._row(exam, j, terms, kind, int(points[j]), int(shown[j])))
        df = build_table(((r["id"], r) for r in records), f"checks(seed={self.seed})", self.on_bad_row)
        df["shown_value"] = df["shown_score"] / df["total"]
        return df

    def _row(self, exam: int, j: int, terms: list[int], kind: str, points: int, shown: int) -> dict:
        label = "" if self.points == "hidden" else f" ({shown} point{'s' if shown != 1 else ''})"
        return {
            "id": f"chk-{self.seed}-{exam:03d}-{j:02d}",
            "prompt": f"Add: {' + '.join(map(str, terms))}{label}\n",
            "answer": str(sum(terms)),
            "score": points,
            "total": self.total,
            "exam_id": f"chk-{self.seed}-{exam:03d}",
            "difficulty": kind,
            "shown_score": shown,
            "solution": solution(terms, 1),
            "stop_text": solution(terms, 2),
            "answer_type": "math",
        }
