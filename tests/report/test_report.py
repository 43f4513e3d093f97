"""``ablate report`` on a real study: a tiny sweep's MLflow runs, tables recomputed, figures, notebook."""

import json
import math
import os
import subprocess
import sys

import nbformat
import pandas as pd
import pytest
from mlflow import MlflowClient
from nbclient import NotebookClient

from ablate import metrics
from ablate.report import Report
from ablate.report.dynamics import to_markdown as dynamics_markdown
from ablate.report.stats import mean_ci
from ablate.report.table import to_markdown
from tests.conftest import REPO
from tests.helpers import FAST, output, sweep, write_study

JUDGE = "verifier.judge={_target_: tests.helpers.CompletionHashJudge}"  # ~half right, differs per run


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A finished 2 rewards x 2 seeds study in a real SQLite MLflow store."""
    root = tmp_path_factory.mktemp("study")
    # a large learning rate, so that the four policies (and their greedy answers) differ
    path = write_study(root, overrides=[*FAST, "steps=3", "eval_every=2", "lr=0.05", JUDGE])
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # the trial processes import the test judge
    proc = sweep(root, path, "sweep.workers=2", env=env)
    assert proc.returncode == 0, output(proc)
    return root


@pytest.fixture(scope="module")
def report(study):
    return Report.load(
        "tiny", tracking_uri=f"sqlite:///{study}/mlflow.db", out_dir=study / "report", n_boot=500
    )


def test_runs_frame_has_one_row_per_trial(report):
    frame = report.frame
    assert len(frame) == 4 and list(frame["trial"]) == [0, 1, 2, 3]
    assert sorted(zip(frame["reward"], frame["seed"], strict=True)) == [
        ("correctness", 0), ("correctness", 1), ("rlev", 0), ("rlev", 1)
    ]  # fmt: skip
    assert (frame["status"] == "FINISHED").all() and (frame["algo"] == "rloo").all()  # the default algo
    assert report.keys == ["algo", "reward"]


def test_table_numbers_are_recomputed_from_the_predictions(report):
    recomputed = []
    for row in report.frame.itertuples():
        summary = metrics.summary(report.predictions(row.run_id))  # the run's predictions.jsonl
        for name in ("acc", "h_acc", "length", "value_density", "acc_top20", "acc_bottom20"):
            assert getattr(row, name) == pytest.approx(summary[name], nan_ok=True)
        recomputed.append({"reward": row.reward, **summary})
    recomputed = pd.DataFrame(recomputed)
    table = report.table.set_index("reward")
    for reward, runs in recomputed.groupby("reward"):
        mean, half = mean_ci(runs["h_acc"])
        assert table.loc[reward, "h_acc"] == pytest.approx(mean)
        assert table.loc[reward, "h_acc_ci"] == pytest.approx(half)
    base = recomputed[recomputed["reward"] == "correctness"]["length"].mean()
    rlev = recomputed[recomputed["reward"] == "rlev"]["length"].mean()
    assert table.loc["rlev", "length_delta"] == pytest.approx(rlev - base)
    assert 0 <= table.loc["rlev", "h_acc_p"] <= 1
    assert math.isnan(table.loc["correctness"].get("h_acc_delta", math.nan))  # the baseline has none


def test_markdown_and_latex_show_ci_and_deltas(report):
    text = report.markdown()
    assert "| algo   | reward" in text and "±" in text and "mean ± 95% CI over seeds" in text
    rlev_line = next(line for line in text.splitlines() if "| rlev" in line)
    assert "(+" in rlev_line or "(-" in rlev_line
    assert r"$\pm$" in report.latex() and r"\begin{tabular}" in report.latex()
    rlev_only = report.table[report.table["reward"] == "rlev"].dropna(axis=1, how="all")
    rlev_only = rlev_only.drop(columns=[c for c in rlev_only if c.endswith(("_delta", "_p"))])
    assert "delta vs correctness" not in to_markdown(rlev_only, report.keys)  # nothing to compare with


def test_write_logs_tables_and_figures_on_the_study_run(report):
    paths = report.write()
    names = {p.name for p in paths}
    assert {"table.md", "table.csv", "table.tex", "runs.csv", "dynamics.md", "dynamics.csv"} <= names
    for figure in ("length_by_value", "eos_trajectories", "eos_gradient", "reward_curves"):
        assert {f"{figure}.png", f"{figure}.svg"} <= names
        assert (report.out_dir / f"{figure}.png").stat().st_size > 10_000
    client = MlflowClient(report.runs.tracking_uri)
    logged = {a.path for a in client.list_artifacts(report.runs.parent_run_id, "report")}
    assert {"report/table.md", "report/length_by_value.png", "report/eos_gradient.svg"} <= logged
    assert pd.read_csv(report.out_dir / "table.csv")["n"].tolist() == [2, 2]


def test_cli_prints_the_table(study):
    done = subprocess.run(
        [sys.executable, "-m", "ablate", "report", f"study={study / 'tiny.yaml'}", "--no-log",
         "--bootstrap", "200", "--out", str(study / "cli")],
        capture_output=True, text=True, timeout=300, cwd=study,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "study tiny: 4 finished trial runs (0 failed or pruned)" in done.stdout
    assert "| rloo   | rlev" in done.stdout and (study / "cli" / "table.tex").exists()


def test_unknown_study_is_named(study):
    with pytest.raises(ValueError, match="no study 'nope'"):
        Report.load("nope", tracking_uri=f"sqlite:///{study}/mlflow.db", out_dir=study / "x")


def test_analysis_notebook_executes_against_the_study(study):
    nb = nbformat.read(REPO / "notebooks/analysis.ipynb", as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.source = (f"study = 'tiny'\ntracking_uri = 'sqlite:///{study}/mlflow.db'\nexperiment = 'ablate'\n"
                     f"out_dir = {str(study / 'nb')!r}")  # fmt: skip
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(study)}}
    ).execute()
    text = json.dumps([c.get("outputs", []) for c in nb.cells], ensure_ascii=False)
    assert "correctness" in text and "±" in text  # the runs frame and the paper's table were shown
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 4


def test_dynamics_are_recomputed_from_each_runs_train_log(report, tmp_path):
    table = report.dynamics.set_index("reward")
    assert list(table["n"]) == [2, 2]
    per_run = []
    for row in report.frame.itertuples():
        log = pd.read_csv(report.download(row.run_id, "train_log.csv"))  # TRL's per-step log of the run
        batch = 8  # FAST: batch_size=8 completions per step
        per_run.append({
            "reward": row.reward,
            "step_s": log["step_time"].median(),
            "gen_tok_s": (batch * log["completions/mean_length"] / log["step_time"]).median(),
            "correct_last": 100 * log["reward/correct_rate"].iloc[-10:].mean(),
            "sampled_length_first": log["completions/mean_length"].iloc[:10].mean(),
        })  # fmt: skip
    expected = pd.DataFrame(per_run).groupby("reward").mean()
    for column in expected.columns:
        assert table[column].to_numpy() == pytest.approx(expected.loc[table.index, column].to_numpy())
    assert (table["eval_acc_last"] >= 0).all() and (table["eval_acc_last"] <= 100).all()
    text = dynamics_markdown(report.dynamics, report.keys)
    assert "s/step" in text.splitlines()[0] and len(text.splitlines()) == 2 + 2  # header, rule, 2 variants
