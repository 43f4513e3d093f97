"""The question-by-question analysis on a real tiny study of the checks task: numbers from the artifacts."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from ablate.report import Report
from ablate.rewards.base import rlev_scale
from tests.conftest import REPO
from tests.helpers import output, sweep, write_study
from tests.test_train import CHECKS_FAST

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("paired")
    judge = "verifier.judge={_target_: tests.helpers.CompletionHashJudge}"  # half right: the policies move
    overrides = [
        *CHECKS_FAST,
        "steps=3",
        "lr=0.02",
        "diagnostics.start=true",
        "diagnostics.stops=true",
        judge,
    ]
    path = write_study(root, overrides=overrides)
    proc = sweep(root, path, "sweep.workers=2", env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, output(proc)
    return Report.load(
        "tiny", tracking_uri=f"sqlite:///{root}/mlflow.db", out_dir=root / "report", n_boot=200
    )


def test_paired_numbers_are_the_runs_own_changes(report):
    table = report.paired
    assert set(table["cell"]) == {"correctness", "rlev"}
    assert set(table["stratum"]) == {"all", "easy", "hard"} and set(table["regressor"]) == {"true"}
    for cell, runs in report.finished.groupby("reward"):
        slopes, means = [], []
        for run_id in runs["run_id"]:
            stops = pd.read_csv(report.download(run_id, "stops.csv"))
            first = stops[(stops["line"] == 1) & (stops["difficulty"] == "hard")]
            change = first["stop_logit_end"] - first["stop_logit_start"]
            means.append(change.mean())
            slopes.append(np.polyfit(rlev_scale(first["value"].to_numpy(), 10), change.to_numpy(), 1)[0])
        hard = table[
            (table["cell"] == cell) & (table["outcome"] == "d_stop_logit") & (table["stratum"] == "hard")
        ]
        by = hard.set_index("statistic")
        assert by.loc["mean", "mean"] == pytest.approx(np.mean(means))
        assert by.loc["slope", "mean"] == pytest.approx(np.mean(slopes))
        assert by.loc["slope", "n"] == 2
    rlev = table[(table["cell"] == "rlev") & (table["statistic"] == "slope")]
    assert rlev["ci_low"].le(rlev["delta"]).all() and rlev["delta"].le(rlev["ci_high"]).all()


def test_report_writes_the_paired_table_and_figure_and_takes_another_baseline(report):
    paths = {p.name for p in report.write(log=False)}
    assert {"paired.md", "paired.csv", "power.csv", "stops_by_value.png", "stops_by_value.svg"} <= paths
    assert "delta: against the correctness cell" in (report.out_dir / "paired.md").read_text()
    root = report.out_dir.parent
    done = subprocess.run(
        [sys.executable, "-m", "ablate", "report", f"study={root / 'tiny.yaml'}", "--no-log",
         "--bootstrap", "100", "--baseline", "rlev", "--out", str(root / "vs_rlev")],
        capture_output=True, text=True, timeout=300, cwd=root,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "power (each variant vs rlev" in done.stdout and "delta: against the rlev cell" in done.stdout
    vs_rlev = pd.read_csv(root / "vs_rlev" / "paired.csv")
    assert vs_rlev[vs_rlev["cell"] == "rlev"]["delta"].isna().all()
    assert vs_rlev[vs_rlev["cell"] == "correctness"]["delta"].notna().any()
