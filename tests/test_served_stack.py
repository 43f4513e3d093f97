"""The served stack without Docker: PostgreSQL and an MLflow server on loopback, and their faults."""

import subprocess
import sys
import time
from collections import Counter

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from ablate.sweep.storage import get_storage
from tests.helpers import FAST, MlflowServer, output, sweep, write_study


@pytest.mark.slow
def test_a_two_worker_study_lands_in_mlflow_server_and_optuna_on_postgresql(postgres, tmp_path):
    mlflow_db = postgres.create_database("mlflow")
    server = MlflowServer(tmp_path / "mlflow", backend=mlflow_db).start()
    try:
        proc = sweep(tmp_path, write_study(tmp_path), "tracking=server", f"tracking.uri={server.uri}",
                     f"sweep.storage={postgres.url}", "sweep.workers=2")  # fmt: skip
        assert proc.returncode == 0, output(proc)
        assert "ablate:***@127.0.0.1" in output(proc) and "ablate:ablate@" not in output(proc)

        study = optuna.load_study(study_name="tiny", storage=get_storage(postgres.url))
        complete = study.get_trials(states=(TrialState.COMPLETE,))
        assert Counter((t.params["reward"], t.params["seed"]) for t in complete) == Counter(
            {(r, s): 1 for r in ("correctness", "rlev") for s in (0, 1)}
        )
        client = MlflowClient(server.uri)
        runs = client.search_runs([client.get_experiment_by_name("ablate").experiment_id])
        (parent,) = [r for r in runs if r.data.tags.get("ablate.role") == "study"]
        assert parent.data.params["study.storage"] == postgres.url.replace("ablate:ablate@", "ablate:***@")
        children = {
            r.info.run_id: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
        }
        assert {t.user_attrs["mlflow_run_id"] for t in complete} == set(children)
        for run in children.values():
            assert run.info.status == "FINISHED" and "eval/h_acc" in run.data.metrics
            assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {
                "predictions.jsonl",
                "config.yaml",
            }
    finally:
        server.stop()


@pytest.mark.slow
def test_mlflow_server_killed_and_restarted_mid_run_loses_no_metric(tmp_path):
    server = MlflowServer(tmp_path / "mlflow").start()
    steps = 40
    train = subprocess.Popen(
        [sys.executable, "-m", "ablate", "train", *FAST, f"steps={steps}", "eval_every=10", "tracking=server",
         f"tracking.uri={server.uri}", "tracking.flush_every_s=1", f"output_dir={tmp_path}/run"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    client = MlflowClient(server.uri)
    deadline = time.monotonic() + 300
    while True:  # wait until training is logging
        assert time.monotonic() < deadline and train.poll() is None, train.stdout.read()[-3000:]
        experiment = client.get_experiment_by_name("ablate")
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        logged = client.get_metric_history(runs[0].info.run_id, "loss") if runs else []
        if logged:
            break
        time.sleep(0.3)
    server.kill()  # a crash, mid-run
    assert train.poll() is None and len(logged) < steps  # training goes on while the server is down
    time.sleep(3)
    server.start()
    try:
        log = train.communicate(timeout=600)[0]
        assert train.returncode == 0, log[-3000:]
        (run,) = client.search_runs([experiment.experiment_id])
        assert run.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == list(
            range(1, steps + 1)
        )
        assert [m.step for m in client.get_metric_history(run.info.run_id, "eval/h_acc")] == [10, 20, 30, 40]
        assert "predictions.jsonl" in {a.path for a in client.list_artifacts(run.info.run_id)}
    finally:
        server.stop()


@pytest.mark.slow
def test_basic_auth_end_to_end(tmp_path, monkeypatch):
    server = MlflowServer(tmp_path / "mlflow", auth_password="s3cret-Pass-2026").start()
    cmd = [sys.executable, "-m", "ablate", "train", *FAST, "tracking=server", f"tracking.uri={server.uri}",
           f"output_dir={tmp_path}/run"]  # fmt: skip
    try:
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            monkeypatch.delenv(key, raising=False)
        refused = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        expected = f"MLflow tracking server {server.uri} refused the request (not authenticated)"
        assert expected in refused.stderr
        assert not (tmp_path / "run" / "train_log.csv").exists()  # nothing trained
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret-Pass-2026")
        done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        client = MlflowClient(server.uri)
        (run,) = client.search_runs([client.get_experiment_by_name("ablate").experiment_id])
        assert run.info.status == "FINISHED"
        assert not any("s3cret" in str(v) for v in [*run.data.params.values(), *run.data.tags.values()])
    finally:
        server.stop()


@pytest.mark.slow
def test_postgresql_restarted_mid_sweep_workers_reconnect_each_cell_once(postgres, tmp_path):
    study_file = write_study(tmp_path, overrides=[*FAST, "steps=40", "eval_every=10"])
    args = (f"sweep.storage={postgres.url}", "sweep.workers=2", "sweep.heartbeat_s=2", "sweep.grace_s=20")
    proc = sweep(tmp_path, study_file, *args, wait=False)
    deadline = time.monotonic() + 300
    while True:  # both workers training
        assert time.monotonic() < deadline and proc.poll() is None, output(proc)
        try:
            study = optuna.load_study(study_name="tiny", storage=get_storage(postgres.url))
            running = [
                t for t in study.trials if "mlflow_run_id" in t.user_attrs and t.state == TrialState.RUNNING
            ]
        except Exception:
            running = []  # the study is not created yet
        if len(running) == 2:
            break
        time.sleep(0.3)
    postgres.pg_ctl("stop")  # a database restart under running trials, heartbeats and the launcher
    time.sleep(3)
    postgres.pg_ctl("start")
    assert proc.wait(timeout=900) == 0, output(proc)
    study = optuna.load_study(study_name="tiny", storage=get_storage(postgres.url))
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert Counter((t.params["reward"], t.params["seed"]) for t in complete) == Counter(
        {(r, s): 1 for r in ("correctness", "rlev") for s in (0, 1)}
    )
