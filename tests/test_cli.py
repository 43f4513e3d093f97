"""A user's mistakes at the command line: one clear message, exit 2, no traceback, nothing left behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import REPO

BAD_ROWS = REPO / "tests" / "fixtures" / "rlev" / "bad_rows.jsonl"


def ablate(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "ablate", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


def no_runs(tmp_path: Path) -> bool:
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiments = client.search_experiments()
    return not client.search_runs([e.experiment_id for e in experiments]) if experiments else True


def test_a_data_file_with_bad_rows_names_each_of_them_and_leaves_nothing_behind(tmp_path):
    where = [f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"output_dir={tmp_path}/run"]
    done = ablate(tmp_path, "train", "data=rlev_json", f"data.path={BAD_ROWS}", *where)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    message = done.stderr[done.stderr.index("ablate train: ") :].splitlines()
    assert (
        message[0]
        == f"ablate train: {BAD_ROWS}: 7 bad row(s); fix them or set data.on_bad_row=skip to leave them out:"
    )
    assert message[1] == f"  {BAD_ROWS}:2: missing 'score'"
    assert message[7] == f"  {BAD_ROWS}:8: invalid JSON: Expecting property name enclosed in double quotes"
    assert message[8].startswith("(--debug or HYDRA_FULL_ERROR=1")
    assert not (tmp_path / "run").exists()  # not even Hydra's files
    assert no_runs(tmp_path)  # no FAILED run


@pytest.mark.parametrize(
    "setting, message",
    [
        (["reward.alpha=-1"], "reward.alpha=-1: must be a finite number >= 0 (the paper uses 10)"),
        (["batch_size=6", "num_generations=4"], "batch_size=6 must be a multiple of num_generations=4"),
    ],
)
def test_a_bad_setting_fails_before_the_data_loads(tmp_path, setting, message):
    where = [f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"output_dir={tmp_path}/run"]
    missing = f"data.path={tmp_path}/none.jsonl"
    done = ablate(tmp_path, "train", *setting, "data=rlev_json", missing, *where)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"ablate train: {message}" in done.stderr
    assert "none.jsonl" not in done.stderr  # the missing file was never opened
    assert not (tmp_path / "run").exists() and no_runs(tmp_path)


def test_debug_shows_where_a_user_error_was_raised(tmp_path):
    done = ablate(tmp_path, "train", "--debug", "reward.alpha=-1", f"output_dir={tmp_path}/run")
    assert done.returncode != 0 and "Traceback" in done.stderr and "check_alpha" in done.stderr


def test_a_missing_predictions_file_is_one_line(tmp_path):
    done = ablate(tmp_path, "evaluate", "--predictions", "nope.jsonl")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[0].startswith("ablate evaluate: ") and "nope.jsonl" in done.stderr


def test_an_unknown_command_or_a_sweep_without_a_study_lists_the_choices(tmp_path):
    unknown = ablate(tmp_path, "trian")
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert unknown.stderr.startswith("ablate: unknown command 'trian'; valid choices are train, warmstart,")
    no_study = ablate(tmp_path, "sweep", "sweep.workers=2")
    assert no_study.returncode == 2
    assert no_study.stderr.startswith("ablate: study=NAME is required; valid choices are ")
    assert "quickstart" in no_study.stderr
