"""One trial's pieces: which trial holds a grid cell, run names."""

import optuna

from ablate.sweep.storage import get_storage
from ablate.sweep.trial import duplicate_of, run_name


def test_a_cell_is_held_by_its_lowest_live_or_any_done_trial(tmp_path):
    storage = get_storage(f"sqlite:///{tmp_path}/o.db")
    study = optuna.create_study(study_name="t", storage=storage)
    cell = {"reward": "rlev", "seed": 0}
    study.enqueue_trial(cell)
    study.enqueue_trial(cell)  # a duplicate, as two machines could queue
    first, second = study.ask(), study.ask()
    params = {k: t.suggest_categorical(k, [v]) for t in (first, second) for k, v in cell.items()}
    assert params == cell
    assert duplicate_of(study, first, cell) is None  # the lower number keeps the cell
    assert duplicate_of(study, second, cell) == first.number
    study.tell(first, 1.0)
    third = study.ask()
    third.suggest_categorical("reward", ["rlev"])
    third.suggest_categorical("seed", [0])
    assert duplicate_of(study, third, cell) == first.number  # done cells are never run again


def test_run_names_carry_the_trial_s_parameters():
    assert run_name(3, {"reward": "rlev", "seed": 0}) == "trial_0003_reward=rlev_seed=0"
    assert run_name(12, {"reward.alpha": 3.14159265}) == "trial_0012_reward.alpha=3.142"
    assert run_name(0, {"data.path": "a/b.jsonl"}) == "trial_0000_data.path=a-b.jsonl"


def test_a_trial_s_run_is_named_by_its_cell():
    from ablate.sweep.study import short_name

    assert short_name({"reward": "rlev", "reward.alpha": 10, "seed": 0}) == "rlev a=10 s0"
    assert short_name({"algo": "rloo", "lr": 1e-4, "seed": 3}) == "rloo lr=0.0001 s3"
    assert short_name({"data.points_sigma": 1.4}) == "points_sigma=1.4"


def test_a_started_trial_links_its_mlflow_run_in_attributes_and_note(tmp_path):
    from optuna_dashboard import get_note

    from ablate.sweep.trial import Objective

    study = optuna.create_study(study_name="t", storage=get_storage(f"sqlite:///{tmp_path}/o.db"))
    trial = study.ask()
    trial.suggest_categorical("reward", ["rlev"])
    trial.suggest_categorical("seed", [1])
    spec = {"tracking_uri": "http://user:secret@mlflow.lab:5000", "experiment_id": "7"}
    Objective(spec, None).started(trial, "abc123")
    url = "http://mlflow.lab:5000/#/experiments/7/runs/abc123?workflowType=machine_learning"
    stored = study.trials[0]
    assert stored.user_attrs["mlflow_run_id"] == "abc123"
    assert stored.user_attrs["mlflow_url"] == url
    assert get_note(trial) == f"MLflow run [rlev s1]({url})"
