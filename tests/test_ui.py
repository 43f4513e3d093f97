"""What a user looks at after a sweep, in a real headless Chromium: the MLflow UI link the sweep
prints, the study's run, and the Optuna dashboard. The screenshots land in docs/ui/ (the README
shows them)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.helpers import MlflowServer, free_port, output, sweep, write_study

SHOTS = Path(__file__).resolve().parents[1] / "docs" / "ui"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# As root in a sandbox; no background traffic to a closed network.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]  # fmt: skip

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium, see README)"),
]


@contextlib.contextmanager
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield chromium.new_page(viewport={"width": 1600, "height": 800})
        finally:
            chromium.close()


@contextlib.contextmanager
def dashboard(cwd: Path, study_file: Path, storage: str):
    port = free_port()
    cmd = [sys.executable, "-m", "ablate", "dashboard", f"study={study_file}", f"sweep.storage={storage}",
           "--port", str(port)]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "dashboard did not start"
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_newcomer_sees_the_study_s_runs_metrics_and_notes_without_clicking(tmp_path):
    server = MlflowServer(tmp_path / "server").start()
    try:
        study_file = write_study(tmp_path, name="ui", grid={"reward": ["correctness", "rlev"], "seed": [0]})
        storage = f"sqlite:///{tmp_path}/optuna.db"
        env = {**os.environ, "MLFLOW_TRACKING_URI": server.uri}
        proc = sweep(tmp_path, study_file, "tracking=server", f"sweep.storage={storage}", env=env)
        assert proc.returncode == 0, output(proc)
        link = re.search(r"^MLflow UI: (\S+)", output(proc), re.M).group(1)
        parent = re.search(r"^the study's run: (\S+)", output(proc), re.M).group(1)
        parent_id = re.search(r"/runs/(\w+)", parent).group(1)
        assert link.startswith(server.uri) and "workflowType=machine_learning" in link

        client = MlflowClient(server.uri)
        runs = client.search_runs([client.get_experiment_by_name("ablate").experiment_id])
        trials = {r.info.run_name: r for r in runs if r.data.tags.get("ablate.role") == "trial"}
        assert sorted(trials) == ["correctness s0", "rlev s0"]
        assert {r.data.params["reward"] for r in trials.values()} == {"correctness", "rlev"}

        SHOTS.mkdir(parents=True, exist_ok=True)
        with browser() as page:
            page.goto(link)
            for name in trials:  # the trial runs are listed, not folded under the study's run
                page.wait_for_selector(f"text={name}", timeout=90_000)
            page.wait_for_timeout(1500)
            page.screenshot(path=SHOTS / "mlflow_study_runs.png")
            table = page.inner_text("body")
            for column in ("eval/h_acc", "eval/acc", "eval/length"):
                assert column in table, column
            for run in trials.values():  # each trial's H-Acc in its row, as MLflow rounds it
                assert f"{run.data.metrics['eval/h_acc']:.4g}"[:4] in table
            assert "study ui" not in table  # the study's own run is not among its trials

            page.goto(link + "&compareRunsMode=CHART")  # the same runs as charts, one per metric
            page.wait_for_selector("text=eval/h_acc", timeout=90_000)
            page.wait_for_timeout(2500)
            page.screenshot(path=SHOTS / "mlflow_study_charts.png")
            assert all(f"{name} (" in page.inner_text("body") for name in trials)  # in the charts' legends
            page.get_by_placeholder("Search metric charts").fill("eval/h_acc")  # far down the page: find it
            page.wait_for_selector("text=rlev s0 (eval/h_acc)", timeout=30_000)

            page.goto(parent)  # the study's run: one metric per variant, the results table
            page.wait_for_selector("text=rlev s0", timeout=90_000)  # its child runs
            page.wait_for_timeout(1500)
            page.screenshot(path=SHOTS / "mlflow_study_run.png")

            with dashboard(tmp_path, study_file, storage) as address:
                page.goto(f"{address}/dashboard/studies/1")
                page.wait_for_selector("text=h_acc", timeout=60_000)  # the metric's name, not "Objective 0"
                page.wait_for_timeout(1500)
                page.screenshot(path=SHOTS / "optuna_study.png")
                page.goto(f"{address}/dashboard/studies/1/trials")
                page.wait_for_selector("text=MLflow run", timeout=60_000)  # the trial's note links its run
                page.wait_for_timeout(1000)
                page.screenshot(path=SHOTS / "optuna_trial.png")
        metrics = client.get_run(parent_id).data.metrics
        assert {k for k in metrics if k.startswith("h_acc/")} == {"h_acc/correctness", "h_acc/rlev"}
        for name, run in trials.items():  # one seed per variant: its mean is the trial's own value
            assert metrics[f"h_acc/{name.split()[0]}"] == pytest.approx(run.data.metrics["eval/h_acc"])
    finally:
        server.stop()
