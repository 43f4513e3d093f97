"""Algorithms beyond what TRL's trainers express by options alone (see ``conf/algo/``)."""

from __future__ import annotations

from typing import Any


def removes_question_scale(trainer: Any) -> bool:
    """Whether the trainer divides each group's rewards by that group's own std (GRPO's
    ``scale_rewards=group``), which cancels a per-question reward scale exactly."""
    return getattr(trainer, "group_std_scaled", getattr(trainer.args, "scale_rewards", None) == "group")
