"""GAOKAO-Bench: Chinese college-entrance exam questions with their official points.

Kept: every ``Data/Objective_Questions`` file (option letters: ``answer_type="choice"`` for one
answer slot, ``"sequence"`` for one letter per blank, checked in order) and the
two math fill-in-the-blank files (``answer_type="math"``); the other subjective files need a judge.
An objective item has one ``score`` per answer slot (GAOKAO-Bench's ``OBJ_score_evaluation.py``):
an English reading passage with answers ``["C", "A", "B"]`` at 2 points is one row worth 6 points,
answer ``"CAB"``. A Physics multi-select item ``["BC"]`` is one slot: 6 points, answer ``"BC"``.

The exam is the whole paper, so several subject files share one:

==========  ==========================================================  ===============
paper       subject files                                               official total
==========  ==========================================================  ===============
Chinese     Chinese_*                                                   150
Math_I      Math_I_* (理科数学)                                          150
Math_II     Math_II_* (文科数学)                                         150
English     English_* (MCQs, Fill_in_Blanks, Reading_Comp, Cloze_Test)  150
Science     Physics, Chemistry, Biology (理综)                           300
Humanities  Political_Science, History, Geography (文综)                 300
==========  ==========================================================  ===============

``exam_id = f"{paper}/{year}/{category}"``, the category normalised so spellings of one paper
collapse: brackets dropped (``（新课标ⅰ）`` -> ``新课标Ⅰ``); ``ⅰ/i/I``, ``ⅱ/ii/II``, ``ⅲ/iii/III``
(any case) -> ``Ⅰ/Ⅱ/Ⅲ``; a trailing 卷 after 新课标 dropped (``新课标Ⅰ卷``, ``新课标卷``); ``甲卷``/``乙卷``
-> ``全国甲卷``/``全国乙卷``. ``全国卷Ⅱ`` stays apart from ``新课标Ⅱ``: in 2010-2011 it was another paper.

>>> df = GaokaoExams(path="../shared/data/gaokao_bench", total="present").load()  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ablate.data.base import ExamLoader, existing_path
from ablate.data.schema import BadRowError, build_table

PAPER = {  # subject file -> the paper (exam) it is part of
    "Chinese": "Chinese", "Math_I": "Math_I", "Math_II": "Math_II", "English": "English",
    "Physics": "Science", "Chemistry": "Science", "Biology": "Science",
    "Political_Science": "Humanities", "History": "Humanities", "Geography": "Humanities",
}  # fmt: skip
OFFICIAL_TOTAL = {  # full marks of each paper
    "Chinese": 150, "Math_I": 150, "Math_II": 150, "English": 150, "Science": 300, "Humanities": 300,
}  # fmt: skip
TOTALS = ("official", "present")
ROMAN = {"ⅰ": "Ⅰ", "ⅱ": "Ⅱ", "ⅲ": "Ⅲ", "i": "Ⅰ", "ii": "Ⅱ", "iii": "Ⅲ"}
LETTERS = re.compile(r"[A-Z]+")


def normalise_category(category: str) -> str:
    """``（新课标ii）`` -> ``新课标Ⅱ``; see the module docstring for every rule."""
    cat = category.strip().strip("（）()").strip()
    cat = re.sub(r"(?i)(?<![a-z])(iii|ii|i)(?![a-z])|[ⅰⅱⅲ]", lambda m: ROMAN[m.group().lower()], cat)
    cat = re.sub(r"^新课标(.*)卷$", r"新课标\1", cat)
    return re.sub(r"^([甲乙丙])卷$", r"全国\1卷", cat)


def subject_of(stem: str) -> str:
    """``2010-2022_Math_II_MCQs`` -> ``Math_II``."""
    rest = stem.split("_", 1)[-1]
    for subject in PAPER:
        if rest == subject or rest.startswith(subject + "_"):
            return subject
    raise ValueError(f"{stem}: unknown GAOKAO-Bench subject; expected one of {', '.join(PAPER)}")


def read_items(path: Path) -> list[tuple[str, Any]]:
    """``(where, item)`` for each entry of the file's ``example`` list."""
    text = path.read_text(encoding="utf-8")
    try:
        items = json.loads(text)["example"]
    except json.JSONDecodeError as err:
        raise BadRowError(f"{path}:{err.lineno}", f"invalid JSON: {err.msg}") from None
    except (KeyError, TypeError):
        raise BadRowError(str(path), "expected an object with an 'example' list") from None
    # The files are pretty-printed and items hold no nested objects, so the lines that open with
    # "{" are the top-level object and then one per item; without that layout, name the item only.
    starts = [i + 1 for i, line in enumerate(text.splitlines()) if line.lstrip().startswith("{")][1:]
    lines = [f" (line {n})" for n in starts] if len(starts) == len(items) else [""] * len(items)
    return [(f"{path}:item {i}{line}", item) for i, (item, line) in enumerate(zip(items, lines, strict=True))]


def _points(item: dict[str, Any], slots: int) -> float:
    score = item.get("score")
    if score is None or score == "":
        raise ValueError("missing 'score'")
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        raise ValueError(f"'score' is not a number: {score!r}")
    return slots * float(score)


def slots_of(item: dict[str, Any]) -> int:
    answer = item.get("answer")
    return len(answer) if isinstance(answer, list) else 1


def item_row(item: Any, subject: str, fill_in: bool) -> dict[str, Any]:
    """One item as a row without ``total`` (that needs the whole exam); ValueError if unusable."""
    if not isinstance(item, dict):
        raise ValueError(f"expected a JSON object, got {item!r:.60}")
    question = item.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ValueError("missing 'question'")
    answer = item.get("answer")
    if fill_in:
        # Many answers end in a sentence period, often after the closing "$": "\\frac{1}{2}$."
        text = answer if isinstance(answer, str) else ""
        answer = re.sub(r"[\s.。]+$", "", text).strip().strip("$").strip()
        if not answer:
            raise ValueError("empty 'answer'")
        points = _points(item, 1)
    else:
        if answer == []:
            raise ValueError("empty 'answer'")
        raw = answer if isinstance(answer, list) else [None]  # a bare "AC": one slot or two?
        slots = [a.strip() if isinstance(a, str) else "" for a in raw]
        if not all(LETTERS.fullmatch(a) for a in slots):
            raise ValueError(f"'answer' must be a list of option letters, got {answer!r:.60}")
        points, answer = _points(item, len(slots)), "".join(slots)
    year, category = str(item.get("year") or "").strip(), item.get("category")
    if not year.isdigit():
        raise ValueError(f"'year' is not a year: {item.get('year')!r}" if year else "missing 'year'")
    if not isinstance(category, str) or not category.strip():
        raise ValueError("missing 'category'")
    return {
        "prompt": question.strip(),
        "answer": answer,
        "answer_type": "math" if fill_in else ("sequence" if slots_of(item) > 1 else "choice"),
        "score": points,
        "exam_id": f"{PAPER[subject]}/{year}/{normalise_category(category)}",
        "difficulty": None,
        "subject": subject,
        "year": int(year),
    }


@dataclass
class GaokaoExams(ExamLoader):
    """GAOKAO-Bench letter-answer and math fill-in items, one exam per paper, year and category."""

    path: str = ""  # the GAOKAO-Bench directory holding Data/ (or that Data/ directory itself)
    subjects: list[str] | None = None  # file stems to keep, e.g. [2010-2022_Math_I_MCQs]; None: all
    total: str = "official"  # official: the paper's full marks; present: points of the items kept

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.total not in TOTALS:
            raise ValueError(f"data.total={self.total!r}: valid choices are {', '.join(TOTALS)}")

    def files(self) -> list[tuple[Path, bool]]:
        """``(file, is_fill_in)`` for every kept subject file, after the ``subjects`` filter."""
        root = existing_path(self.path)
        data = root / "Data" if (root / "Data").is_dir() else root
        if not (data / "Objective_Questions").is_dir():
            raise FileNotFoundError(f"data.path={self.path}: no Data/Objective_Questions folder in it")
        found = [(p, False) for p in sorted((data / "Objective_Questions").glob("*.json"))]
        fill_in = (data / "Subjective_Questions").glob("*_Math_*Fill-in-the-Blank.json")
        found += [(p, True) for p in sorted(fill_in)]
        if self.subjects is None:
            return found
        stems = [p.stem for p, _ in found]
        unknown = sorted(set(self.subjects) - set(stems))
        if unknown:
            raise ValueError(f"data.subjects has unknown {unknown}: valid choices are {', '.join(stems)}")
        return [(p, fill) for p, fill in found if p.stem in self.subjects]

    def read(self) -> pd.DataFrame:
        records: list[tuple[str, dict[str, Any] | BadRowError]] = []
        for path, fill_in in self.files():
            subject, items = subject_of(path.stem), read_items(path)
            indices = [str(it.get("index")) if isinstance(it, dict) else None for _, it in items]
            # Ids come from GAOKAO-Bench's own index unless it is missing or repeats in the file.
            by_index = not {None, "None"} & set(indices) and len(set(indices)) == len(indices)
            for pos, (where, item) in enumerate(items):
                try:
                    row = item_row(item, subject, fill_in)
                except ValueError as err:
                    records.append((where, BadRowError(where, str(err))))
                    continue
                row["id"] = f"{path.stem}:{indices[pos] if by_index else pos}"
                records.append((where, row))
        present: dict[str, float] = defaultdict(float)
        for _, row in records:
            if isinstance(row, dict):
                present[row["exam_id"]] += row["score"]
        for _, row in records:
            if isinstance(row, dict):
                exam = row["exam_id"]
                official = OFFICIAL_TOTAL[exam.split("/")[0]]
                row["total"] = present[exam] if self.total == "present" else official
                if row["total"] < present[exam]:
                    raise ValueError(
                        f"{self.path}: exam {exam!r} has {present[exam]:g} points of items, more than"
                        f" its official total {official}: two papers under one category?"
                    )
        return build_table(records, str(self.path), self.on_bad_row)
