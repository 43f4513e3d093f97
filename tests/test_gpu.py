"""On CUDA (``gpu`` marker: skipped without it): bf16 steps, vLLM rollouts and evaluations, the EOS
autograd check, the sweep's one GPU per trial and its own vLLM server. Run them on any CUDA machine:
``pytest -m gpu``."""

import importlib.util
import json

import pandas as pd
import pytest
import torch
from mlflow import MlflowClient
from trl import RLOOTrainer

from ablate.evaluate import read_predictions
from ablate.names import PREDICTIONS, TAG_DEVICE
from ablate.train import run, training_args
from tests.diagnostics import test_eos_gradient as eos_check
from tests.helpers import FAST, compose_train, output, sweep, write_study

pytestmark = pytest.mark.gpu


def runs_of(tmp_path, where: str = "") -> list:
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    return client.search_runs([e.experiment_id for e in client.search_experiments()], where)


@pytest.mark.parametrize("algo", ["rloo", "grpo", "reinforce_pp"])
def test_a_bf16_step_on_cuda(algo, tmp_path):
    cfg = compose_train(*FAST, f"algo={algo}", "reward=rlev", f"output_dir={tmp_path}/run",
                        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db")  # fmt: skip
    assert training_args(cfg, tmp_path).bf16  # bf16 autocast wherever the GPU has it
    summary = run(cfg)
    log = pd.read_csv(tmp_path / "run/train_log.csv")
    assert len(log) == 2 and log["loss"].notna().all() and (log["grad_norm"] > 0).any()
    assert summary["n"] == 16
    (mlflow_run,) = runs_of(tmp_path)
    assert mlflow_run.data.tags[TAG_DEVICE].startswith("cuda")


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (.[gpu])")
def test_a_vllm_colocate_step(tmp_path):
    small = ["model=tiny_warm", "steps=2", "batch_size=8", "max_completion_length=16", "eval_limit=16"]
    where = [f"output_dir={tmp_path}/run", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"]
    cfg = compose_train(*small, "rollout=vllm", "rollout.gpu_memory_utilization=0.2", *where)
    assert training_args(cfg, tmp_path).use_vllm
    run(cfg)
    log = pd.read_csv(tmp_path / "run/train_log.csv")
    assert len(log) == 2 and (log["completions/mean_length"] > 0).all() and log["loss"].notna().all()


def test_the_eos_diagnostic_matches_autograd_on_cuda(tmp_path):
    assert torch.cuda.is_available()  # so the trainer below places the policy on the GPU
    eos_check.test_diagnostic_matches_autograd_per_token("rloo", RLOOTrainer, [], tmp_path)


def test_the_sweep_pins_one_gpu_per_trial(tmp_path):
    gpus = list(range(min(2, torch.cuda.device_count())))
    study = write_study(tmp_path, grid={"seed": [0, 1]})
    proc = sweep(tmp_path, study, "sweep.workers=2", f"sweep.gpus=[{','.join(map(str, gpus))}]")
    assert proc.returncode == 0
    runs = runs_of(tmp_path, "tags.`ablate.role` = 'trial'")
    devices = sorted(r.data.tags[TAG_DEVICE] for r in runs)
    assert len(devices) == 2 and all(d.startswith("cuda:0 (CUDA_VISIBLE_DEVICES=") for d in devices)
    pinned = sorted(d.split("=")[1].rstrip(")") for d in devices)
    assert pinned == sorted(str(gpus[i % len(gpus)]) for i in range(2)), json.dumps(devices)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (.[gpu])")
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="a managed server needs a GPU of its own")
def test_a_sweep_serves_its_trials_from_a_vllm_server_it_starts_and_stops(tmp_path):
    served = [
        "model=tiny_warm",
        "rollout=vllm_server",
        "rollout.managed=true",
        "rollout.gpu_memory_utilization=0.3",
    ]
    study = write_study(tmp_path, grid={"seed": [0, 1]}, overrides=[*FAST[:5], "eval_limit=16", *served])
    proc = sweep(tmp_path, study, "sweep.workers=1", "sweep.gpus=[0,1]")
    assert proc.returncode == 0, output(proc)[-3000:]
    runs = runs_of(tmp_path, "tags.`ablate.role` = 'trial'")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert all(r.data.tags[TAG_DEVICE] == "cuda:0 (CUDA_VISIBLE_DEVICES=0)" for r in runs)  # GPU 1 serves
    logs = sorted((tmp_path / "runs/sweeps/tiny/logs").glob("vllm*.log"))
    assert [p.name for p in logs] == ["vllm0_0001.log", "vllm0_0002.log"]  # a server for each worker
    logs = sorted((tmp_path / "runs/sweeps/tiny").glob("*/train_log.csv"))
    assert len(logs) == 2 and all((pd.read_csv(p)["completions/mean_length"] > 0).all() for p in logs)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (.[gpu])")
def test_evaluations_by_the_vllm_engine_answer_as_transformers_generate_does(tmp_path):
    # lr 1e-12: both runs evaluate (almost) the warm start, one through vLLM, one through generate
    small = [
        "model=tiny_warm",
        "steps=2",
        "batch_size=8",
        "max_completion_length=32",
        "eval_limit=64",
        "lr=1e-12",
    ]
    answers = []
    for engine in ("false", "true"):
        where = [f"output_dir={tmp_path}/{engine}", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"]
        cfg = compose_train(*small, "rollout=vllm", "rollout.gpu_memory_utilization=0.2",
                            f"rollout.evaluate={engine}", *where)  # fmt: skip
        run(cfg)
        answers.append(read_predictions(tmp_path / engine / PREDICTIONS))
    hf, vllm = answers
    assert list(hf["id"]) == list(vllm["id"])
    same = (hf["completion"] == vllm["completion"]).mean()
    assert same >= 0.9, same  # greedy both; bf16 kernels may split a near tie differently
