"""``ablate train`` end to end: real TRL steps on the tiny model, evaluation, MLflow."""

import json
import re
import subprocess
import sys

import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from ablate import metrics
from ablate.evaluate import evaluate_file
from ablate.models import load_model
from ablate.train import run
from tests.helpers import FAST, compose_train


def test_train_run_writes_metrics_that_evaluate_reproduces(tmp_path):
    db = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = compose_train(
        *FAST, "reward=rlev", f"output_dir={tmp_path}/run", f"tracking.uri={db}", "eval_every=1"
    )
    summary = run(cfg)
    out = tmp_path / "run"

    predictions = pd.read_json(out / "predictions.jsonl", lines=True)
    assert len(predictions) == 16
    assert list(predictions.columns) == [
        "id",
        "exam_id",
        "value",
        "answer",
        "completion",
        "correct",
        "credit",  # the fraction of points earned (1.0 or 0.0 unless verifier.partial=true)
        "length",
    ]
    assert predictions["length"].between(0, 12).all()
    assert json.loads((out / "metrics.json").read_text()) == pytest.approx(summary, nan_ok=True)
    assert evaluate_file(out / "predictions.jsonl") == pytest.approx(summary, nan_ok=True)
    assert metrics.summary(predictions) == pytest.approx(summary, nan_ok=True)

    log = pd.read_csv(out / "train_log.csv")
    assert log["step"].tolist() == [1, 2]
    assert log["reward/scale_mean"].between(1.0, 2.0).all()  # the RLEV scale of the sampled questions
    assert "rewards/rlev/mean" in log.columns

    client = MlflowClient(db)
    (mlrun,) = client.search_runs([client.get_experiment_by_name("ablate").experiment_id])
    assert mlrun.info.status == "FINISHED"
    assert mlrun.data.tags["reward"] == "rlev" and mlrun.data.params["reward.alpha"] == "10"
    # composed by code (no Hydra choices): each group is tagged by its target's class name
    assert (mlrun.data.tags["data"], mlrun.data.tags["algo"]) == ("SyntheticExams", "RLOOTrainer")
    # eval_every=1: evaluated after step 1 and at the end (step 2), with the final numbers last.
    history = client.get_metric_history(mlrun.info.run_id, "eval/h_acc")
    assert [m.step for m in history] == [1, 2]
    assert history[-1].value == pytest.approx(summary["h_acc"], nan_ok=True)


def test_same_seed_same_cpu_metrics(tmp_path):
    results = []
    for i in range(2):
        cfg = compose_train(
            *FAST, f"output_dir={tmp_path}/r{i}", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"
        )
        run(cfg)
        results.append(
            (
                pd.read_csv(tmp_path / f"r{i}/train_log.csv"),
                pd.read_json(tmp_path / f"r{i}/predictions.jsonl", lines=True),
            )
        )
    (log_a, pred_a), (log_b, pred_b) = results
    cols = ["loss", "reward", "reward_std", "completions/mean_length", "grad_norm"]
    pd.testing.assert_frame_equal(log_a[cols], log_b[cols])
    pd.testing.assert_frame_equal(pred_a, pred_b)


def test_parameters_change_and_saved_model_loads(tmp_path):
    cfg = compose_train(
        *FAST,
        "steps=3",
        "save_model=true",
        f"output_dir={tmp_path}/run",
        f"tracking.uri=sqlite:///{tmp_path}/m.db",
    )
    run(cfg)
    from hydra.utils import instantiate
    from transformers import AutoModelForCausalLM

    initial, _ = load_model(instantiate(cfg.model))
    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "run/model")
    deltas = [
        (a - b).abs().max().item() for a, b in zip(initial.parameters(), trained.parameters(), strict=True)
    ]
    assert max(deltas) > 0  # the policy moved
    log = pd.read_csv(tmp_path / "run/train_log.csv")
    assert (log["grad_norm"] > 0).any()
    assert torch.isfinite(torch.tensor(deltas)).all()


@pytest.mark.slow
def test_console_script_train_with_overrides(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "ablate", "train", *FAST, "reward=correctness", f"output_dir={tmp_path}/run"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "H-Acc" in done.stdout and "MLflow run:" in done.stdout
    # Off a terminal: a short line for the first and last step instead of a dict of every metric.
    assert re.search(r"^step 1/2  reward \S+  correct \S+  length \S+  s/step \S+$", done.stdout, re.M)
    assert re.search(r"^step 2/2  reward ", done.stdout, re.M) and "{'loss'" not in done.stdout
    assert re.search(
        r"^MLflow UI: http://127\.0\.0\.1:5000/#/experiments/\d+/runs/\w+\?workflowType=", done.stdout, re.M
    )
    assert "FutureWarning" not in done.stderr  # the libraries' notices about each other are filtered
    assert (tmp_path / "mlflow.db").exists()  # tracking=local: a SQLite store in the working directory
    log = pd.read_csv(tmp_path / "run/train_log.csv")
    assert (log["reward/scale_mean"] == 1.0).all()


def test_cfg_job_prints_the_resolved_config(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "ablate", "train", "reward=uniform", "--cfg", "job"],
        capture_output=True, text=True, timeout=120, check=True, cwd=tmp_path,
    )  # fmt: skip
    assert "_target_: ablate.rewards.uniform.UniformReward" in done.stdout


def test_unknown_reward_lists_the_choices(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "ablate", "train", "reward=rlve"], capture_output=True, text=True, timeout=120,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode != 0
    assert "Could not find 'reward/rlve'" in done.stderr
    assert "correctness" in done.stderr and "weak_labels" in done.stderr


def test_lora_run_trains_only_the_adapter(tmp_path):
    cfg = compose_train(
        *FAST, "steps=2", "save_model=true", "model.lora={r: 4, lora_alpha: 8, target_modules: [q_proj]}",
        f"output_dir={tmp_path}/run", f"tracking.uri=sqlite:///{tmp_path}/m.db",
    )  # fmt: skip
    run(cfg)
    saved = {p.name for p in (tmp_path / "run/model").iterdir()}
    assert "adapter_config.json" in saved and "adapter_model.safetensors" in saved


@pytest.mark.slow
def test_multirun_grid(tmp_path):
    not_data = [o for o in FAST if not o.startswith("data.")]
    done = subprocess.run(
        [sys.executable, "-m", "ablate", "train", "-m", *not_data, "steps=1", "reward=correctness,rlev",
         "data.num_exams=6", "output_dir=runs/${hydra:job.num}"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("ablate").experiment_id])
    assert sorted(r.data.tags["reward"] for r in runs) == ["correctness", "rlev"]
    assert all(r.info.status == "FINISHED" for r in runs)


CHECKS_FAST = [
    *[o for o in FAST if not o.startswith("data.")],
    "data=checks", "data.num_exams=4", "data.questions_per_exam=[8,12]", "data.test_fraction=0.3",
]  # fmt: skip


def test_start_policy_and_stop_probabilities_are_kept_for_the_paired_analysis(tmp_path):
    db = f"sqlite:///{tmp_path}/mlflow.db"
    judge = "verifier.judge={_target_: tests.helpers.CompletionHashJudge}"  # half right: the policy moves
    cfg = compose_train(
        *CHECKS_FAST, "diagnostics.start=true", "diagnostics.stops=true", f"output_dir={tmp_path}/run",
        f"tracking.uri={db}", judge,
    )  # fmt: skip
    summary = run(cfg)
    out = tmp_path / "run"
    start = pd.read_json(out / "predictions_start.jsonl", lines=True)
    end = pd.read_json(out / "predictions.jsonl", lines=True)
    assert start["id"].tolist() == end["id"].tolist() and len(end) == summary["n"]
    stops = pd.read_csv(out / "stops.csv")
    assert sorted(stops.groupby("id")["line"].apply(list).map(tuple).unique()) == [(1, 2, 3)]
    assert set(stops["id"]) == set(end["id"])
    assert {"value", "shown_value", "difficulty", "p_stop_start", "p_stop_end", "stop_logit_start"} <= set(
        stops
    )
    assert stops["p_stop_start"].between(0, 1).all() and (stops["p_stop_start"] != stops["p_stop_end"]).any()
    client = MlflowClient(db)
    (mlrun,) = client.search_runs([client.get_experiment_by_name("ablate").experiment_id])
    assert [m.step for m in client.get_metric_history(mlrun.info.run_id, "eval/acc")] == [0, 2]
    logged = {a.path for a in client.list_artifacts(mlrun.info.run_id)}
    assert {"predictions_start.jsonl", "stops.csv"} <= logged


@pytest.mark.parametrize(
    ("algo", "reward", "removed"),
    [
        ("grpo", "rlev", True),
        ("grpo", "correctness", False),
        ("rloo", "rlev", False),
        ("reinforce_pp", "rlev", False),
    ],
)
def test_a_value_scale_removed_by_the_group_std_is_named(algo, reward, removed, tmp_path, caplog):
    db = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = compose_train(*FAST, "steps=1", f"algo={algo}", f"reward={reward}", f"output_dir={tmp_path}/run",
                        f"tracking.uri={db}")  # fmt: skip
    with caplog.at_level("WARNING", logger="ablate.train"):
        run(cfg)
    client = MlflowClient(db)
    (mlrun,) = client.search_runs([client.get_experiment_by_name("ablate").experiment_id])
    assert (mlrun.data.tags.get("ablate.value_scale") == "removed by scale_rewards=group") == removed
    assert ("removes the per-question scale exactly" in caplog.text) == removed


def test_the_default_algorithm_keeps_the_value_scale():
    assert compose_train().algo.trainer._target_ == "ablate.algos.rloo.RLOOTrainer"
