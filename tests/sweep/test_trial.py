"""One trial's pieces: which trial holds a grid cell, run names."""

import optuna
from mlflow.exceptions import MlflowException

from ablate.launch import RankStopped
from ablate.sweep.storage import get_storage
from ablate.sweep.trial import RankLost, duplicate_of, rank_errors, rank_failure, record_rank_error, run_name


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


def _raised(err: BaseException, monkeypatch, rank: int, output_dir) -> None:
    monkeypatch.setenv("RANK", str(rank))
    record_rank_error(output_dir, err)


def _stopped_inside_mlflow() -> MlflowException:
    """What rank 0 raises when the launcher's SIGTERM lands inside an MLflow SQL-store call."""
    try:
        try:
            raise RankStopped("stopped by the launcher (SIGTERM): another rank of this run failed")
        except RankStopped as err:
            raise MlflowException(message=err) from err  # as mlflow.store.db.utils' session does
    except MlflowException as wrapped:
        return wrapped


def test_a_rank_s_own_error_fails_the_trial_whichever_rank_raised_it_first(tmp_path, monkeypatch):
    # rank 1 reached the bad data first; the launcher stopped rank 0 while it talked to MLflow
    _raised(ValueError("data: need questions in both splits"), monkeypatch, 1, tmp_path)
    _raised(_stopped_inside_mlflow(), monkeypatch, 0, tmp_path)
    errors = rank_errors(tmp_path)
    assert [(r, e["lost"]) for r, e in errors.items()] == [(0, True), (1, False)]
    failure = rank_failure(1, 2, errors)
    assert type(failure) is RuntimeError
    assert str(failure) == "rank 1: ValueError: data: need questions in both splits"


def test_a_trial_whose_ranks_were_only_stopped_or_killed_is_a_lost_rank(tmp_path, monkeypatch):
    _raised(_stopped_inside_mlflow(), monkeypatch, 0, tmp_path)  # rank 1 was killed: it left nothing
    failure = rank_failure(1, 2, rank_errors(tmp_path))
    assert isinstance(failure, RankLost)
    assert str(failure) == (
        "a rank of this 2-process trial failed (launcher exit code 1); rank 0: MlflowException: "
        "stopped by the launcher (SIGTERM): another rank of this run failed"
    )
    assert isinstance(rank_failure(-9, 2, {}), RankLost)  # nothing left: the worker's ranks were killed


def test_rank_0_s_own_error_comes_first(tmp_path, monkeypatch):
    _raised(KeyError("a"), monkeypatch, 0, tmp_path)
    _raised(ValueError("b"), monkeypatch, 1, tmp_path)
    assert str(rank_failure(1, 2, rank_errors(tmp_path))) == "rank 0: KeyError: 'a'"
