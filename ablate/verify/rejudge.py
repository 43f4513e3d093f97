"""Re-score a saved predictions table with another checker: ``ablate evaluate --predictions F --rejudge ...``.

The table's own ``correct`` column is checker A (the one that scored it); B is the verifier composed
from ablate's configs with the given overrides (``verifier=llm_judge verifier.judge.base_url=...``).
An LLM judge needs the question: from the table's ``prompt`` column, else from the data config named in
the overrides (``data=gaokao``), joined on ``id``.

>>> agreement(pd.Series([True, True, False, False]), pd.Series([True, False, True, False]))
{'both_right': 1, 'both_wrong': 1, 'only_a': 1, 'only_b': 1, 'n': 4, 'agreement': 50.0}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

NEEDED = ("completion", "answer")


def verifier_and_data(overrides: Sequence[str]) -> tuple[Any, Any | None]:
    """The verifier of ablate's config with ``overrides``, and the data config if an override names one."""
    from hydra.errors import HydraException
    from hydra.utils import instantiate

    from ablate.config import compose

    try:
        cfg = compose(overrides)
    except HydraException as err:
        raise ValueError(f"--rejudge {' '.join(overrides)}: {err}") from None
    uses_data = any(o.split("=", 1)[0].lstrip("+~").split(".")[0] == "data" for o in overrides)
    return instantiate(cfg.verifier), (cfg.data if uses_data else None)


def with_questions(table: pd.DataFrame, data_cfg: Any, source: str) -> pd.DataFrame:
    """``prompt`` and ``answer_type`` for each row, from the data config's questions by ``id``."""
    from hydra.utils import instantiate

    if "id" not in table:
        raise ValueError(
            f"{source}: no 'id' column, so its rows cannot be matched to data={data_cfg._target_}"
        )
    questions = instantiate(data_cfg).load().set_index("id")
    missing = sorted(set(table["id"].astype(str)) - set(questions.index.astype(str)))
    if missing:
        raise ValueError(
            f"{source}: {len(missing)} ids not in the data config's questions, e.g. {missing[:3]}"
        )
    by_id = questions.rename(index=str)
    table = table.copy()
    for column in ("prompt", "answer_type"):
        if column in by_id:
            table[column] = table["id"].astype(str).map(by_id[column])
    return table


def rejudge(table: pd.DataFrame, verifier: Any, source: str = "predictions") -> pd.DataFrame:
    """The table with ``rejudged`` (B's verdict) and ``credit`` (B's score: a fraction if partial)."""
    missing = [c for c in NEEDED if c not in table]
    if missing:
        raise ValueError(f"{source}: --rejudge needs columns {list(NEEDED)}; missing {missing}")
    n = len(table)
    prompts = table["prompt"].tolist() if "prompt" in table else [None] * n
    types = table["answer_type"].tolist() if "answer_type" in table else [None] * n
    types = [t if isinstance(t, str) else None for t in types]
    credit = verifier.score_many(table["completion"].tolist(), table["answer"].tolist(), prompts, types)
    out = table.copy()
    out["credit"] = np.asarray(credit, dtype=float)
    if getattr(verifier, "partial", False):  # all slots right: the verdict; credit keeps the fraction
        out["rejudged"] = [
            verifier(c, a, prompt=p, answer_type=t)
            for c, a, p, t in zip(out["completion"], out["answer"], prompts, types, strict=True)
        ]
    else:
        out["rejudged"] = out["credit"] == 1.0
    return out


def agreement(a: pd.Series, b: pd.Series) -> dict[str, float]:
    """Counts of both right, both wrong, only A right, only B right; agreement in percent."""
    a, b = a.astype(bool).to_numpy(), b.astype(bool).to_numpy()
    counts = {
        "both_right": int((a & b).sum()),
        "both_wrong": int((~a & ~b).sum()),
        "only_a": int((a & ~b).sum()),
        "only_b": int((~a & b).sum()),
        "n": len(a),
    }
    return counts | {"agreement": 100.0 * (counts["both_right"] + counts["both_wrong"]) / max(1, len(a))}


def format_agreement(counts: dict[str, float]) -> str:
    """The agreement table, A (the table's own ``correct``) in rows, B (rejudged) in columns."""
    right, wrong, only_a, only_b = (counts[k] for k in ("both_right", "both_wrong", "only_a", "only_b"))
    return "\n".join(
        [
            "agreement of A (the table's correct) and B (rejudged):",
            "              B right  B wrong",
            f"  A right    {right:7d}  {only_a:7d}",
            f"  A wrong    {only_b:7d}  {wrong:7d}",
            f"both right {right}, both wrong {wrong}, only A {only_a}, only B {only_b}: "
            f"{counts['agreement']:.1f}% of {counts['n']} agree",
        ]
    )
