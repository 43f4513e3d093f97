"""``ablate sweep`` end to end: real worker processes, real TRL steps, real storages and MLflow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from tests.helpers import FAST, free_port, output, sweep, write_study

GRID = {"reward": ["correctness", "rlev"], "seed": [0, 1]}  # write_study's default grid


def load(storage: str, name: str = "tiny") -> optuna.Study:
    from ablate.sweep.storage import get_storage

    return optuna.load_study(study_name=name, storage=get_storage(storage))


def complete_cells(study: optuna.Study) -> Counter:
    return Counter(
        json.dumps(t.params, sort_keys=True) for t in study.get_trials(states=(TrialState.COMPLETE,))
    )


def cells_of(grid: dict) -> set[str]:
    import itertools

    keys = list(grid)
    combos = itertools.product(*grid.values())
    return {json.dumps(dict(zip(keys, c, strict=True)), sort_keys=True) for c in combos}


def mlflow_runs(tmp_path: Path) -> tuple[MlflowClient, list]:
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("ablate").experiment_id])
    return client, runs


@pytest.mark.slow
def test_two_launchers_complete_every_cell_exactly_once_then_resume(storage_url, tmp_path):
    study_file = write_study(tmp_path)
    first = sweep(tmp_path, study_file, f"sweep.storage={storage_url}", wait=False)
    deadline = time.monotonic() + 120
    while "study 'tiny' (new)" not in output(first) and time.monotonic() < deadline:
        assert first.poll() is None, output(first)
        time.sleep(0.2)
    # A second machine (here a second launcher) joins the same study through the storage.
    second = sweep(tmp_path, study_file, f"sweep.storage={storage_url}", wait=False)
    for proc in (first, second):
        assert proc.wait(timeout=900) == 0, output(proc)
    assert "(resumed)" in output(second)

    study = load(storage_url)
    assert complete_cells(study) == Counter({cell: 1 for cell in cells_of(GRID)})
    assert all(t.state == TrialState.COMPLETE or "duplicate_of" in t.user_attrs for t in study.trials)
    workers = {t.user_attrs["worker"] for t in study.trials if t.state == TrialState.COMPLETE}
    assert len(workers) == 4  # one process per trial

    client, runs = mlflow_runs(tmp_path)
    (parent,) = [r for r in runs if r.data.tags.get("ablate.role") == "study"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FINISHED" and len(children) == 4
    assert parent.data.params["study.n_trials"] == "4"
    assert json.loads(parent.data.params["study.grid"]) == GRID
    by_number = {int(r.data.tags["optuna.trial_number"]): r for r in children}
    for trial in study.get_trials(states=(TrialState.COMPLETE,)):
        run = by_number[trial.number]
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        assert run.info.status == "FINISHED" and run.data.tags["reward"] == trial.params["reward"]
        assert run.data.metrics["eval/h_acc"] == pytest.approx(trial.value)
        assert trial.user_attrs["metrics"]["h_acc"] == pytest.approx(trial.value)
    table = client.download_artifacts(parent.info.run_id, "results.csv", str(tmp_path))
    assert "correctness" in Path(table).read_text()

    # Resume: the same command again finds every cell done and runs nothing.
    again = sweep(tmp_path, study_file, f"sweep.storage={storage_url}")
    assert again.returncode == 0, output(again)
    assert "(resumed)" in output(again) and "0 queued now" in output(again)
    assert len(load(storage_url).trials) == len(study.trials)
    for line in ("study tiny: a test study", "H-Acc", "value density", "mlflow ui --backend-store-uri"):
        assert line in output(again)


def test_a_failing_trial_fails_alone(tmp_path):
    grid = {"data.test_fraction": [0.25, 0.0]}  # no test questions: that trial raises
    study_file = write_study(tmp_path, grid=grid)
    proc = sweep(tmp_path, study_file, "sweep.workers=2")
    assert proc.returncode == 1, output(proc)
    assert "not every trial completed" in output(proc)
    study = load(f"sqlite:///{tmp_path}/optuna.db")
    states = {t.params["data.test_fraction"]: t for t in study.trials}
    assert states[0.25].state == TrialState.COMPLETE
    assert states[0.0].state == TrialState.FAIL
    assert "need questions in both splits" in states[0.0].user_attrs["error"]
    # It failed on its data, before training: no MLflow run of its own, and the study's run is FAILED.
    assert "mlflow_run_id" not in states[0.0].user_attrs
    _, runs = mlflow_runs(tmp_path)
    trial_runs = [r for r in runs if r.data.tags.get("ablate.role") == "trial"]
    assert [r.data.tags["optuna.trial_number"] for r in trial_runs] == [str(states[0.25].number)]
    (parent,) = [r for r in runs if r.data.tags.get("ablate.role") == "study"]
    assert parent.info.status == "FAILED"


def test_pruned_trials_stop_early_and_are_marked(tmp_path):
    study_file = write_study(
        tmp_path,
        grid={},
        overrides=[*FAST, "steps=4", "eval_every=1"],
        space={"reward.alpha": {"_target_": "optuna.distributions.FloatDistribution", "low": 1, "high": 9}},
        n_trials=2,
        # H-Acc is at most 100: every trial is pruned at its first report
        pruner={"_target_": "optuna.pruners.ThresholdPruner", "lower": 1000.0},
    )
    proc = sweep(tmp_path, study_file)
    assert proc.returncode == 0, output(proc)
    study = load(f"sqlite:///{tmp_path}/optuna.db")
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 2
    client, _ = mlflow_runs(tmp_path)
    for trial in study.trials:
        assert list(trial.intermediate_values) == [1]  # stopped after the first evaluation
        assert 1.0 <= trial.params["reward.alpha"] <= 9.0
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.info.status == "KILLED" and "pruned at step 1" in run.data.tags["pruned"]
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1]


def wait_for_training(storage: str, timeout_s: float = 180) -> optuna.trial.FrozenTrial:
    """The first trial whose MLflow run exists (its worker is past start-up and training)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            for trial in load(storage).get_trials(states=(TrialState.RUNNING,)):
                if "mlflow_run_id" in trial.user_attrs:
                    return trial
        except Exception:
            pass  # the study is not created yet
        time.sleep(0.2)
    raise TimeoutError("no trial started training")


KILL_GRID = {"reward": ["correctness", "rlev"]}


def check_killed_and_retried(tmp_path: Path, storage: str, killed: int) -> None:
    study = load(storage)
    assert complete_cells(study) == Counter({cell: 1 for cell in cells_of(KILL_GRID)})
    dead = study.trials[killed]
    assert dead.state == TrialState.FAIL
    (retry,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed]
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params
    client, _ = mlflow_runs(tmp_path)
    assert client.get_run(dead.user_attrs["mlflow_run_id"]).info.status == "FAILED"


@pytest.mark.slow
def test_sigkilled_sweep_is_resumed_and_its_cell_retried(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study_file = write_study(tmp_path, grid=KILL_GRID, overrides=[*FAST, "steps=60"])
    args = ("sweep.heartbeat_s=1", "sweep.grace_s=3")
    proc = sweep(tmp_path, study_file, *args, wait=False, start_new_session=True)
    victim = wait_for_training(storage)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its worker, as a lost machine
    proc.wait(timeout=60)
    assert load(storage).trials[victim.number].state == TrialState.RUNNING  # nobody told Optuna

    again = sweep(tmp_path, study_file, *args)
    assert again.returncode == 0, output(again)
    check_killed_and_retried(tmp_path, storage, victim.number)


@pytest.mark.slow
def test_sigkilled_worker_is_detected_and_its_cell_retried_in_the_same_sweep(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study_file = write_study(tmp_path, grid=KILL_GRID, overrides=[*FAST, "steps=60"])
    proc = sweep(tmp_path, study_file, wait=False)
    victim = wait_for_training(storage)
    os.kill(int(victim.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
    assert proc.wait(timeout=900) == 0, output(proc)
    assert f"exited with code {-signal.SIGKILL}" in output(proc)
    check_killed_and_retried(tmp_path, storage, victim.number)


@pytest.mark.slow
def test_several_trials_per_worker_give_the_same_runs_as_one_process_each(tmp_path):
    study_file = write_study(tmp_path)
    metrics = {}
    for per_worker in (1, 4):
        root = tmp_path / f"per{per_worker}"
        root.mkdir()
        proc = sweep(root, study_file, "sweep.workers=1", f"sweep.trials_per_worker={per_worker}")
        assert proc.returncode == 0, output(proc)
        study = load(f"sqlite:///{root}/optuna.db")
        assert complete_cells(study) == Counter({cell: 1 for cell in cells_of(GRID)})
        workers = {t.user_attrs["worker"] for t in study.trials}
        assert len(workers) == (len(study.trials) if per_worker == 1 else 1)
        for t in study.trials:
            log = pd.read_csv(root / t.user_attrs["output_dir"] / "train_log.csv")
            timing = [c for c in log.columns if "time" in c or "per_second" in c]
            steps = log.drop(columns=timing)  # sampled completions' lengths, rewards, losses, EOS gradients
            metrics[per_worker, json.dumps(t.params, sort_keys=True)] = (t.user_attrs["metrics"], steps)
    # A trial's numbers do not depend on what its process ran before.
    for cell in cells_of(GRID):
        assert metrics[1, cell][0] == metrics[4, cell][0]
        assert metrics[1, cell][1].equals(metrics[4, cell][1])  # NaN where a step logged none, in both


def test_changed_settings_do_not_mix_into_an_existing_study(tmp_path):
    study_file = write_study(tmp_path, grid={"reward": ["correctness"]})
    assert sweep(tmp_path, study_file).returncode == 0
    proc = sweep(tmp_path, study_file, "steps=3")
    assert proc.returncode != 0
    assert "already exists in this storage with other overrides" in output(proc)
    assert "sweep.name=" in output(proc)


def test_dashboard_serves_the_study(tmp_path):
    study_file = write_study(tmp_path)
    optuna.create_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/optuna.db")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ablate", "dashboard", f"study={study_file}", "--port", str(port)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as response:
                    studies = json.loads(response.read())["study_summaries"]
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
                time.sleep(0.5)
        assert [s["study_name"] for s in studies] == ["tiny"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_quickstart_study_end_to_end(tmp_path):
    proc = sweep(tmp_path, Path("quickstart"))
    text = output(proc)
    assert proc.returncode == 0, text
    table = text.split("study quickstart:")[1]
    for variant in ("correctness", "uniform", "shuffled", "multiplicative", "rlev"):
        assert variant in table
    assert "Optuna dashboard: ablate dashboard study=quickstart" in text
    _, runs = mlflow_runs(tmp_path)
    (parent,) = [r for r in runs if r.data.tags.get("ablate.role") == "study"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["reward"] for r in children) == sorted(
        ["correctness", "uniform", "shuffled", "multiplicative", "rlev"]
    )
    assert all(r.info.status == "FINISHED" and r.data.tags["algo"] == "rloo" for r in children)


def test_a_multi_objective_search_returns_both_values(tmp_path):
    study_file = write_study(
        tmp_path,
        grid={},
        space={"reward.alpha": {"_target_": "optuna.distributions.FloatDistribution", "low": 1, "high": 9}},
        n_trials=2,
        objectives=[
            {"metric": "h_acc", "direction": "maximize"},
            {"metric": "length", "direction": "minimize"},
        ],
    )
    proc = sweep(tmp_path, study_file, "sweep.workers=2")
    assert proc.returncode == 0, output(proc)
    study = load(f"sqlite:///{tmp_path}/optuna.db")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    for trial in study.trials:
        metrics = trial.user_attrs["metrics"]
        assert trial.values == pytest.approx([metrics["h_acc"], metrics["length"]])
    table = output(proc).split("study tiny: a test study")[1]
    assert "reward.alpha" in table and len([t for t in study.trials if t.state == TrialState.COMPLETE]) == 2


def test_unreachable_tracking_server_fails_fast_naming_it(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    proc = sweep(tmp_path, write_study(tmp_path), "tracking=server", f"tracking.uri={uri}")
    assert time.monotonic() - start < 10
    assert proc.returncode == 2 and "Traceback" not in output(proc)
    assert f"MLflow tracking server {uri} is not reachable" in output(proc)
    assert not (tmp_path / "optuna.db").exists()  # no study was created, nothing trained
