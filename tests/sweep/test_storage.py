"""One suite over every storage backend behind ``get_storage``; dead trials retried, runs marked."""

import time

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

from ablate.sweep.storage import RetryAndMarkRun, get_storage


def test_queue_pop_and_tell_on_every_backend(storage_url):
    url = storage_url
    storage = get_storage(url)
    study = optuna.create_study(study_name="s", storage=storage)
    study.enqueue_trial({"x": 1})
    study.enqueue_trial({"x": 2})
    again = optuna.load_study(study_name="s", storage=get_storage(url))  # as a second process would
    first, second = study.ask(), again.ask()  # each takes a different queued trial
    assert {first.suggest_int("x", 0, 9), second.suggest_int("x", 0, 9)} == {1, 2}
    study.tell(first, 1.0)
    again.tell(second, 2.0)
    reloaded = optuna.load_study(study_name="s", storage=get_storage(url))
    assert sorted(t.value for t in reloaded.trials) == [1, 2]
    heartbeat = isinstance(storage, optuna.storages.RDBStorage)
    assert heartbeat == (not url.startswith("journal:"))  # SQL storages detect dead workers


def test_a_trial_without_heartbeat_is_failed_retried_and_its_run_marked(tmp_path):
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    run_id = mlflow.MlflowClient(tracking).create_run("0").info.run_id
    storage = get_storage(f"sqlite:///{tmp_path}/o.db", heartbeat_s=1, grace_s=1,
                          on_stale=RetryAndMarkRun(max_retry=1, tracking_uri=tracking))  # fmt: skip
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    trial.suggest_categorical("reward", ["rlev"])
    trial.set_user_attr("mlflow_run_id", run_id)
    storage.record_heartbeat(trial._trial_id)  # as the trial's worker does, before it dies
    time.sleep(2.5)
    optuna.storages.fail_stale_trials(study)
    dead, retry = study.trials
    assert dead.state == TrialState.FAIL
    assert retry.state == TrialState.WAITING and retry.params == {"reward": "rlev"}
    assert retry.system_attrs["failed_trial"] == dead.number
    run = mlflow.MlflowClient(tracking).get_run(run_id)
    assert run.info.status == "FAILED" and "worker lost" in run.data.tags["error"]


def test_unreachable_database_names_the_url_without_password():
    with pytest.raises(ConnectionError, match=r"postgresql\+psycopg://u:\*\*\*@127\.0\.0\.1:1/db"):
        get_storage("postgresql+psycopg://u:secret@127.0.0.1:1/db")


QUEUED = 60


def _pop_all(url: str) -> list[int]:
    """Take queued trials until none is left, as a worker does (``ask`` pops the queue first)."""
    study = optuna.load_study(study_name="q", storage=get_storage(url))
    taken = []
    while True:
        trial = study.ask()
        if trial.number >= QUEUED:  # the queue was empty: a fresh trial
            study.tell(trial, state=TrialState.FAIL)
            return taken
        taken.append(trial.number)


def test_concurrent_workers_never_take_the_same_queued_trial(storage_url):
    import multiprocessing

    study = optuna.create_study(study_name="q", storage=get_storage(storage_url))
    for i in range(QUEUED):
        study.enqueue_trial({"x": i})
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        taken = [n for part in pool.map(_pop_all, [storage_url] * 4) for n in part]
    assert sorted(taken) == list(range(QUEUED))  # each queued trial taken exactly once


def test_a_study_is_created_once_then_loaded_and_a_changed_study_refused(storage_url):
    from ablate.sweep.storage import open_study
    from ablate.sweep.study import load_study

    cfg = load_study("quickstart")
    storage = get_storage(storage_url)
    study, created = open_study(cfg, storage, create=True)
    assert created and study.user_attrs["ablate.spec"]["grid"] == {
        "reward": list(cfg.grid.reward),
        "seed": [0],
    }
    again, created = open_study(cfg, storage, create=True)
    assert not created and again._study_id == study._study_id
    loaded, created = open_study(cfg, storage)  # a trial's worker: load only
    assert not created and loaded.directions == study.directions
    changed = load_study("quickstart", train_overrides=["steps=3"])
    with pytest.raises(ValueError, match="already exists in this storage with other overrides"):
        open_study(changed, storage, create=True)
