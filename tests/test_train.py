"""``ablate train`` end to end: real TRL GRPO steps on the tiny model, then evaluation."""

import json
import subprocess
import sys

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from ablate import metrics
from ablate.cli import CONF_DIR
from ablate.evaluate import evaluate_file
from ablate.train import run

FAST = [
    "steps=2",
    "batch_size=8",
    "num_generations=4",
    "max_completion_length=12",
    "eval_limit=16",
    "model.hidden_size=32",
    "model.layers=1",
    "model.heads=2",
    "model.intermediate_size=64",
    "data.num_exams=8",
    "data.test_fraction=0.25",
]


def test_train_run_writes_metrics_that_evaluate_reproduces(tmp_path):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*FAST, "reward=rlev", f"output_dir={tmp_path}"])
    summary = run(cfg)

    predictions = pd.read_json(tmp_path / "predictions.jsonl", lines=True)
    assert len(predictions) == 16
    assert list(predictions.columns) == [
        "id",
        "exam_id",
        "value",
        "answer",
        "completion",
        "correct",
        "length",
    ]
    assert predictions["length"].between(0, 12).all()
    assert json.loads((tmp_path / "metrics.json").read_text()) == pytest.approx(summary, nan_ok=True)
    assert evaluate_file(tmp_path / "predictions.jsonl") == pytest.approx(summary, nan_ok=True)
    assert metrics.summary(predictions) == pytest.approx(summary, nan_ok=True)

    log = pd.read_csv(tmp_path / "train_log.csv")
    assert log["step"].tolist() == [1, 2]
    # The reward variant was the one TRL called: its scale metric is RLEV's range.
    assert log["reward/scale_mean"].between(1.0, 2.0).all()
    assert "rewards/rlev/mean" in log.columns


@pytest.mark.slow
def test_console_script_train_with_overrides(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "ablate", "train", *FAST, "reward=correctness", f"output_dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "H-Acc" in done.stdout
    log = pd.read_csv(tmp_path / "train_log.csv")
    assert (log["reward/scale_mean"] == 1.0).all()


def test_cfg_job_prints_the_resolved_config():
    done = subprocess.run(
        [sys.executable, "-m", "ablate", "train", "reward=uniform", "--cfg", "job"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "_target_: ablate.rewards.uniform.UniformReward" in done.stdout


def test_unknown_reward_lists_the_choices():
    done = subprocess.run(
        [sys.executable, "-m", "ablate", "train", "reward=rlve"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "Could not find 'reward/rlve'" in done.stderr
    assert "correctness" in done.stderr and "weak_labels" in done.stderr
