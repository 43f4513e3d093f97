"""The launcher's pieces: queueing grid cells, storage URLs."""

import optuna

from ablate.sweep.launcher import queue_missing_cells
from ablate.sweep.storage import default_storage_url, get_storage, sampler_of
from ablate.sweep.study import grid_cells, load_study


def test_cells_are_queued_once_and_failed_ones_again(tmp_path):
    cfg = load_study("paper_table4_ablation")
    cells = grid_cells(cfg)
    storage = get_storage(f"sqlite:///{tmp_path}/o.db")
    study = optuna.create_study(study_name="t", storage=storage, sampler=sampler_of(cfg, cells))
    assert queue_missing_cells(study, cells) == 15
    assert queue_missing_cells(study, cells) == 0  # a second launcher (or a resume) queues nothing
    trial = study.ask()  # takes the first queued cell
    assert trial.suggest_categorical("reward", ["correctness"]) == "correctness"
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    assert queue_missing_cells(study, cells) == 1  # the failed cell is queued again on resume
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert len(waiting) == 15 and waiting[-1].system_attrs["fixed_params"] == cells[0]


def test_default_storage_sits_beside_a_sqlite_mlflow_store():
    assert default_storage_url("sqlite:///runs/mlflow.db") == "sqlite:///runs/optuna.db"
    assert default_storage_url("sqlite:////abs/mlflow.db") == "sqlite:////abs/optuna.db"
    assert default_storage_url("http://127.0.0.1:5000") == "sqlite:///optuna.db"


def test_the_printed_link_opens_the_study_s_trial_runs_with_their_metrics(tmp_path):
    import json

    from mlflow import MlflowClient

    from ablate.sweep.launcher import study_view
    from ablate.tracking import TrackingConfig, ensure_experiment

    cfg = load_study("paper_table4_ablation")
    tracking = TrackingConfig(uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment_id = ensure_experiment(tracking)
    url = study_view(cfg, tracking, experiment_id)
    assert url == (
        f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs"
        "?workflowType=machine_learning&viewStateShareKey=ablate-paper_table4_ablation"
    )
    tags = MlflowClient(tracking.uri).get_experiment(experiment_id).tags
    state = json.loads(tags["mlflow.sharedViewState.ablate-paper_table4_ablation"])
    assert state["searchFilter"] == (
        "tags.`ablate.study` = 'paper_table4_ablation' and tags.`ablate.role` = 'trial'"
    )
    assert (state["orderByKey"], state["orderByAsc"]) == ("metrics.`eval/h_acc`", False)  # best first
    assert state["selectedColumns"] == [
        "params.`reward`", "params.`seed`", "metrics.`eval/h_acc`", "metrics.`eval/acc`",
        "metrics.`eval/length`", "metrics.`eval/value_density`", "metrics.`eval/length_gap`",
    ]  # fmt: skip
