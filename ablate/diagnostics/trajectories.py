"""The paper's Figure 2: EOS probability over generation position, highest- vs lowest-valued prompts.

From the greedy evaluation's per-position pi(eos) (``ablate.evaluate.predict``): the ``k``
highest- and ``k`` lowest-valued test prompts, by absolute position and by position relative
to the answer's length. Under RLEV the paper sees EOS rise early on low-value prompts and stay
suppressed on high-value ones.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from ablate.metrics import top_bottom
from ablate.names import EOS_TRAJECTORIES

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
    """Two panels (absolute, relative position), mean pi(eos) with 95% normal intervals; PNG and SVG.

    Plain matplotlib: every run draws this figure, and seaborn's import and bootstrap cost
    seconds a run.
    """
    import matplotlib

    matplotlib.use("Agg")  # figures are files; no display is needed
    import matplotlib.pyplot as plt

    stats = table.groupby(["run", "group"], sort=False)
    colours = dict(
        zip(table["group"].unique(), ("tab:blue", "tab:orange", "tab:green", "tab:red"), strict=False)
    )
    dashes = dict(zip(table["run"].unique(), ("-", "--", ":", "-."), strict=False))
    with plt.style.context("seaborn-v0_8-whitegrid"):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
        for ax, x, label in (
            (axes[0], "position", "generation position (tokens)"),
            (
                axes[1],
                "relative_position",
                "position relative to answer length (0 = start, 0.9 = last tenth)",
            ),
        ):
            for (run, group), part in stats:
                by = part.groupby(x)["eos_prob"].agg(["mean", "sem"]).fillna({"sem": 0.0})
                name = group if len(dashes) == 1 else f"{group}, {run}"
                ax.plot(by.index, by["mean"], dashes[run], color=colours[group], label=name)
                ax.fill_between(by.index, by["mean"] - 1.96 * by["sem"], by["mean"] + 1.96 * by["sem"],
                                color=colours[group], alpha=0.2, linewidth=0)  # fmt: skip
            ax.set(xlabel=label, ylabel="EOS probability (mean, 95% CI)")
        axes[1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))  # one legend, outside the data
        axes[0].set_title("EOS probability by position, highest- vs lowest-valued prompts")
        axes[1].set_title("Same, by relative position")
        fig.tight_layout()
        paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
        for path in paths:
            fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return paths


def eos_figure(
    model: Any,
    tokenizer: Any,
    predictions: pd.DataFrame,
    output_dir: Path,
    top_k: int,
    batch_size: int,
    baseline: tuple[str, str] | None = None,
) -> list[Path]:
    """A run's EOS trajectories (``eos_trajectories.csv`` and its figure in ``output_dir``), with those
    of ``baseline`` = (run id, tracking URI), an earlier run, drawn beside them."""
    from ablate.generation import eos_probabilities  # torch only where a model runs

    def score(rows: pd.DataFrame) -> list[list[float]]:
        return eos_probabilities(
            model, list(rows["prompt_ids"]), list(rows["completion_ids"]), tokenizer.eos_token_id,
            tokenizer.pad_token_id, batch_size,
        )  # fmt: skip

    table = eos_trajectories(predictions, top_k, run=output_dir.name, score=score)
    if baseline:
        import mlflow

        run_id, uri = baseline
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=EOS_TRAJECTORIES, tracking_uri=uri
        )
        theirs = pd.read_csv(local)
        own = theirs["run"].iloc[0] if "run" in theirs and len(theirs) else run_id
        table = pd.concat(
            [theirs[theirs["run"] == own].assign(run=f"baseline {own}"), table], ignore_index=True
        )
    path = output_dir / EOS_TRAJECTORIES
    table.to_csv(path, index=False)
    return [path, *plot_eos_trajectories(table, path.with_suffix(""))]
