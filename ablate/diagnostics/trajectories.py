"""The paper's Figure 2: EOS probability over generation position, highest- vs lowest-valued prompts.

From the greedy evaluation's per-position pi(eos) (``ablate.evaluate.predict``): the ``k``
highest- and ``k`` lowest-valued test prompts, by absolute position and by position relative
to the answer's length. Under RLEV the paper sees EOS rise early on low-value prompts and stay
suppressed on high-value ones.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ablate.metrics import top_bottom

RELATIVE_BINS = 10


def eos_trajectories(
    predictions: pd.DataFrame,
    k: int = 200,
    run: str = "this run",
    score: Callable[[pd.DataFrame], list[list[float]]] | None = None,
) -> pd.DataFrame:
    """Long table ``run, group, id, value, position, relative_position, eos_prob`` for top/bottom ``k``.

    pi(eos) per position comes from the ``eos_probs`` column, or from ``score`` applied to the
    chosen rows only (``ablate.generation.eos_probabilities``: one teacher-forced pass).
    """
    k = max(1, min(k, len(predictions) // 2))
    top, bottom = top_bottom(predictions, share=k / len(predictions))
    rows = []
    for group, part in ((f"top {len(top)} by value", top), (f"bottom {len(bottom)} by value", bottom)):
        if score is not None:
            part = part.assign(eos_probs=score(part))
        for q in part.itertuples():
            n = len(q.eos_probs)
            for position, prob in enumerate(q.eos_probs):
                rel = min(int(RELATIVE_BINS * position / n), RELATIVE_BINS - 1) / RELATIVE_BINS if n else 0.0
                rows.append((run, group, q.id, q.value, position, rel, prob))
    cols = ["run", "group", "id", "value", "position", "relative_position", "eos_prob"]
    return pd.DataFrame(rows, columns=cols)


def plot_eos_trajectories(table: pd.DataFrame, stem: Path) -> list[Path]:
    """Two panels (absolute, relative position), mean pi(eos) with 95% CIs; PNG and SVG."""
    import matplotlib

    matplotlib.use("Agg")  # figures are files; no display is needed
    import matplotlib.pyplot as plt
    import seaborn as sns  # imported here: a run pays for plotting only when it draws

    sns.set_theme(style="whitegrid")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    style = "run" if table["run"].nunique() > 1 else None
    for ax, x, label in (
        (axes[0], "position", "generation position (tokens)"),
        (axes[1], "relative_position", "position relative to answer length (0 = start, 0.9 = last tenth)"),
    ):
        sns.lineplot(data=table, x=x, y="eos_prob", hue="group", style=style, errorbar=("ci", 95), ax=ax)
        ax.set(xlabel=label, ylabel="EOS probability (mean, 95% CI)")
    axes[0].get_legend().remove()  # one legend, outside the data
    sns.move_legend(axes[1], "upper left", bbox_to_anchor=(1.02, 1.0))
    axes[0].set_title("EOS probability by position, highest- vs lowest-valued prompts")
    axes[1].set_title("Same, by relative position")
    fig.tight_layout()
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for path in paths:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return paths
