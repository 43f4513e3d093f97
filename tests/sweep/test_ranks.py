"""Sweep trials of several processes (``sweep.devices_per_trial=2``): gloo ranks on this CPU."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import psutil
import pytest
from optuna.trial import TrialState

from ablate.names import TRIAL_OUTCOME
from ablate.sweep.trial import rank_errors
from tests.helpers import FAST, output, sweep, write_study
from tests.sweep.test_sweep import KILL_GRID, check_killed_and_retried, load, mlflow_runs, wait_for_training

TWO = ("sweep.devices_per_trial=2", "sweep.gpus=[]")


def rank_processes(root: int) -> dict[str, psutil.Process]:
    """The ranks of the trial running under the sweep process ``root``, by their RANK."""
    ranks = {}
    for proc in psutil.Process(root).children(recursive=True):
        try:
            rank = proc.environ().get("RANK")  # the launcher runs the same command line without one
            if "ablate.sweep.ranks" in proc.cmdline() and rank is not None:
                ranks[rank] = proc
        except psutil.NoSuchProcess:
            continue
    return ranks


@pytest.mark.slow
def test_a_sweep_of_two_process_trials_completes_with_rank_0_reporting(tmp_path):
    study_file = write_study(tmp_path, grid=KILL_GRID, overrides=[*FAST, "steps=3", "eval_every=1"])
    proc = sweep(tmp_path, study_file, *TWO)
    assert proc.returncode == 0, output(proc)
    study = load(f"sqlite:///{tmp_path}/optuna.db")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    client, _ = mlflow_runs(tmp_path)
    for trial in study.trials:
        assert list(trial.intermediate_values) == [1, 2]  # rank 0 reported each periodic evaluation
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.info.status == "FINISHED"
        assert run.data.tags["ablate.device"] == "cpu:0, 2 processes"
        assert run.data.tags["optuna.trial_number"] == str(trial.number)
        outcome = json.loads((tmp_path / trial.user_attrs["output_dir"] / TRIAL_OUTCOME).read_text())
        assert outcome["summary"]["h_acc"] == trial.value == run.data.metrics["eval/h_acc"]
    # one MLflow run per trial (rank 1 logs nothing), under the study's run
    assert len({t.user_attrs["mlflow_run_id"] for t in study.trials}) == 2


@pytest.mark.slow
def test_rank_0_prunes_every_rank_of_a_trial(tmp_path):
    study_file = write_study(
        tmp_path,
        grid={"reward": ["rlev"]},
        overrides=[*FAST, "steps=4", "eval_every=1"],
        pruner={"_target_": "optuna.pruners.ThresholdPruner", "lower": 1000.0},  # pruned at its first report
    )
    proc = sweep(tmp_path, study_file, *TWO)
    assert proc.returncode == 0, output(proc)
    (trial,) = load(f"sqlite:///{tmp_path}/optuna.db").trials
    assert trial.state == TrialState.PRUNED and list(trial.intermediate_values) == [1]
    client, _ = mlflow_runs(tmp_path)
    run = client.get_run(trial.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED" and "pruned at step 1" in run.data.tags["pruned"]


@pytest.mark.slow
def test_an_error_of_the_trial_itself_fails_it_without_a_retry(tmp_path):
    study_file = write_study(tmp_path, grid={"data.test_fraction": [0.0]})  # no test questions: it raises
    proc = sweep(tmp_path, study_file, *TWO)
    assert proc.returncode == 1, output(proc)
    (trial,) = load(f"sqlite:///{tmp_path}/optuna.db").trials  # failed once, not queued again
    assert trial.state == TrialState.FAIL
    # either rank may reach the bad data first; the launcher then stops the other
    assert re.match(r"RuntimeError: rank [01]: ValueError: ", trial.user_attrs["error"])
    assert "need questions in both splits" in trial.user_attrs["error"]


def training_ranks(tmp_path: Path):
    """A sweep of 2-rank trials, once its first trial trains: its storage, process, trial and ranks."""
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study_file = write_study(tmp_path, grid=KILL_GRID, overrides=[*FAST, "steps=60"])
    proc = sweep(tmp_path, study_file, *TWO, wait=False)
    victim = wait_for_training(storage)
    ranks = rank_processes(proc.pid)
    assert set(ranks) == {"0", "1"}
    return storage, proc, victim, ranks


@pytest.mark.slow
def test_a_killed_rank_fails_its_trial_and_the_cell_is_retried(tmp_path):
    storage, proc, victim, ranks = training_ranks(tmp_path)
    ranks["1"].send_signal(signal.SIGKILL)
    _, alive = psutil.wait_procs([ranks["0"]], timeout=60)
    assert not alive  # the other rank went
    assert proc.wait(timeout=900) == 0, output(proc)
    check_killed_and_retried(tmp_path, storage, victim.number)  # FAIL, FAILED in MLflow, retried once
    dead = load(storage).trials[victim.number]
    assert dead.user_attrs["error"].startswith("RankLost: a rank of this 2-process trial failed")
    client, _ = mlflow_runs(tmp_path)
    reason = client.get_run(dead.user_attrs["mlflow_run_id"]).data.tags["error"]
    assert "RankStopped" in reason or "gloo/transport/" in reason  # stopped, or its collective lost the peer
    assert rank_errors(tmp_path / dead.user_attrs["output_dir"])[0]["lost"]  # rank 0 left why it stopped


@pytest.mark.slow
def test_a_killed_worker_leaves_no_ranks_behind(tmp_path):
    storage, proc, victim, ranks = training_ranks(tmp_path)
    os.kill(int(victim.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)  # as the OOM killer would
    gone, alive = psutil.wait_procs(list(ranks.values()), timeout=60)
    assert not alive and len(gone) == 2  # the launcher got SIGTERM when its worker died, and stopped them
    assert proc.wait(timeout=900) == 0, output(proc)
    check_killed_and_retried(tmp_path, storage, victim.number)
