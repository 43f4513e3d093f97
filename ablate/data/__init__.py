"""Exam data: one canonical table (see ``schema``) from any of the ``conf/data/`` loaders."""

from ablate.data.base import ExamLoader, split_by_exam
from ablate.data.schema import CANONICAL, BadRowError, build_table, canonical_row

__all__ = ["CANONICAL", "BadRowError", "ExamLoader", "build_table", "canonical_row", "split_by_exam"]
