"""Multi-process runs: ``ablate train launch.processes=N`` under accelerate, gloo on this CPU."""

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from ablate import launch
from ablate.diagnostics.eos import TOKEN_COLUMNS, EOSGradients
from tests.helpers import compose_train, free_port


def test_launch_configs_are_trl_s_shipped_files():
    for name in launch.CONFIGS:
        assert launch.config_file(name).is_file(), name
    with pytest.raises(ValueError, match="valid choices are ddp, zero1, zero2, zero3, fsdp1, fsdp2"):
        launch.config_file("zero4")


def test_deepspeed_and_fsdp_need_cuda():
    cfg = compose_train("launch.processes=2", "launch.config=zero3").launch
    with pytest.raises(ValueError, match="zero3: DeepSpeed and FSDP need CUDA"):
        launch.check(cfg, cuda=False)
    launch.check(cfg, cuda=True)
    with pytest.raises(ValueError, match=r"launch\.processes=0"):
        launch.check(compose_train("launch.processes=0").launch, cuda=False)


def test_the_ranks_run_the_same_command_in_one_directory():
    cfg = compose_train("launch.processes=2", "launch.main_port=29555")
    given = ["steps=3", "output_dir=elsewhere", "launch.processes=2"]
    cmd = launch.command(cfg, given, "/runs/x", cuda=False)
    i = cmd.index("-m", 3)
    assert cmd[i : i + 3] == ["-m", "ablate", "train"]
    assert cmd[i + 3 :] == ["steps=3", "launch.processes=2", "output_dir=/runs/x"]
    assert cmd[cmd.index("--num_processes") + 1] == "2"
    assert cmd[cmd.index("--main_process_port") + 1] == "29555"
    assert cmd[cmd.index("--mixed_precision") + 1] == "no"  # the CPU has no bf16 autocast to speak of
    assert launch.command(cfg, [], "/runs/x", cuda=True).count("--mixed_precision") == 0


def test_the_global_batch_must_split_over_the_processes():
    from ablate.train import check_settings

    with pytest.raises(ValueError, match=r"batch_size=12 .* multiple of launch\.processes=8"):
        check_settings(compose_train("batch_size=12", "num_generations=4", "launch.processes=8"))


def test_one_process_shards_nothing():
    table = pd.DataFrame({"id": ["a", "b", "c"]})
    assert launch.shard(table) is table and launch.gathered(table, table["id"]) is table


def _ranks(rank: int, port: int, tokens: dict, out: str) -> None:
    os.environ |= {"RANK": str(rank), "WORLD_SIZE": "2"}
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        table = pd.DataFrame({"id": list("abcde"), "x": range(5)})
        merged = launch.gathered(launch.shard(table), table["id"])
        stats = EOSGradients(eos_token_id=0)
        half = {k: [v[rank::2]] for k, v in tokens.items()}  # each rank saw every other token
        stats.step_tokens.update(half)
        with open(f"{out}.{rank}", "w") as f:
            json.dump({"merged": merged.to_dict("list"), "eos": stats.step_metrics()}, f)
    finally:
        dist.destroy_process_group()


def test_two_ranks_merge_evaluation_shards_and_eos_tokens(tmp_path):
    """Over real gloo processes: the shards come back as the one table, and the EOS statistics are those
    of one process that saw every token, with the gradient DDP averages (each rank's / 2)."""
    rng = np.random.default_rng(0)
    n = 40
    tokens = {"grad": rng.normal(size=n), "prob": rng.uniform(size=n),
              "bucket": rng.integers(0, 3, n), "pos": rng.integers(1, 3, n)}  # fmt: skip
    mp.spawn(_ranks, args=(free_port(), tokens, str(tmp_path / "rank")), nprocs=2, join=True)
    single = EOSGradients(eos_token_id=0)
    order = np.r_[np.arange(0, n, 2), np.arange(1, n, 2)]  # rank 0's tokens, then rank 1's
    single.step_tokens.update({k: [tokens[k][order] / (2 if k == "grad" else 1)] for k in TOKEN_COLUMNS})
    expected = single.step_metrics()
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank.{rank}").read_text())
        assert got["merged"] == {"id": list("abcde"), "x": [0, 1, 2, 3, 4]}
        assert got["eos"].keys() == expected.keys() and len(expected) > 20
        for key, value in expected.items():
            assert got["eos"][key] == pytest.approx(value, rel=1e-12), key


def _lose_the_peer(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    dist.barrier()
    if rank == 1:
        os._exit(1)  # as a rank the OOM killer takes
    try:
        dist.barrier()
    except RuntimeError as err:
        Path(out).write_text(json.dumps([type(err).__name__, launch.peer_lost(err)]))


def test_a_collective_whose_peer_died_is_a_lost_rank(tmp_path):
    out = tmp_path / "err.json"
    args = (free_port(), str(out))
    mp.start_processes(_lose_the_peer, args=args, nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + 60
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert json.loads(out.read_text()) == ["RuntimeError", True]  # gloo's plain RuntimeError, recognised
    assert launch.peer_lost(launch.RankStopped("stopped")) and not launch.peer_lost(ValueError("a bug"))


def _train(tmp_path, processes: int, *extra: str) -> subprocess.CompletedProcess:
    run = [sys.executable, "-m", "ablate", "train", "model=tiny_warm", "steps=2", "batch_size=8",
           "eval_limit=40", "diagnostics.start=true", f"launch.processes={processes}", *extra,
           f"tracking.uri=sqlite:///{tmp_path}/mlflow{processes}.db",
           f"output_dir={tmp_path}/run{processes}"]  # fmt: skip
    return subprocess.run(run, capture_output=True, text=True, timeout=900, cwd=tmp_path)


@pytest.mark.slow
def test_a_two_process_run_is_one_run_evaluated_as_one_process_would(tmp_path):
    one, two = _train(tmp_path, 1), _train(tmp_path, 2)
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]
    assert "2 processes (ddp) under accelerate launch" in two.stdout
    assert two.stdout.count("MLflow run:") == 1 and two.stdout.count("step 2/2") == 1  # rank 0 speaks
    # Greedy evaluation split over the ranks and merged: the starting policy's answers, question by question.
    start = [pd.read_json(tmp_path / f"run{n}/predictions_start.jsonl", lines=True) for n in (1, 2)]
    assert len(start[1]) == 40 and start[1]["id"].tolist() == start[0]["id"].tolist()
    assert start[1]["completion"].tolist() == start[0]["completion"].tolist()
    assert json.loads((tmp_path / "run2/metrics.json").read_text())["n"] == 40
    with sqlite3.connect(tmp_path / "mlflow2.db") as db:
        runs = db.execute("select status from runs").fetchall()
        steps = db.execute("select distinct step from metrics where key like 'eos/prob_%'").fetchall()
    assert runs == [("FINISHED",)]  # one MLflow run: only rank 0 talks to MLflow
    assert sorted(s for (s,) in steps) == [1, 2]  # the EOS statistics, gathered over both ranks, each step
    log = pd.read_csv(tmp_path / "run2/train_log.csv")
    assert len(log) == 2 and log["num_tokens"].iloc[-1] > 0


TIMINGS = ("step_time", "train_runtime", "train_samples_per_second", "train_steps_per_second")


def _logged(db: Path) -> dict[tuple[str, int], float]:
    with sqlite3.connect(db) as con:
        rows = con.execute("select key, step, value from metrics").fetchall()
    return {(key, step): value for key, step, value in rows if key not in TIMINGS}


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["rloo", "reinforce_pp"])
def test_two_processes_log_what_one_process_logs(tmp_path, algo):
    # Per-row random streams make the completions independent of the split; the rest is float order.
    extra = (f"algo={algo}", "reward=rlev", "steps=3", "rollout.seed_per_row=true")
    for processes in (1, 2):
        done = _train(tmp_path, processes, *extra)
        assert done.returncode == 0, done.stderr[-3000:]
    one, two = _logged(tmp_path / "mlflow1.db"), _logged(tmp_path / "mlflow2.db")
    assert one.keys() == two.keys()
    keys = {key for key, _ in one}
    assert {"reward", "loss", "grad_norm", "eos/grad_middle", "eos/prob_bottom20", "eval/h_acc"} <= keys
    assert {step for key, step in one if key == "reward"} == {1, 2, 3}
    for key, value in one.items():
        assert two[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert one[("completions/mean_length", 3)] != one[("completions/mean_length", 1)]  # it trained


RECIPES = [("paper_7b", 8, "zero3"), ("paper_0_5b", 1, "ddp")]


@pytest.mark.parametrize(("experiment", "processes", "config"), RECIPES)
def test_the_paper_recipes(experiment, processes, config):
    from ablate.config import TRAIN_GROUPS, check_targets
    from ablate.train import check_settings, planned_steps

    cfg = compose_train(f"experiment={experiment}", *(["data.path=train.json"] if processes > 1 else []))
    for group in TRAIN_GROUPS:
        check_targets(cfg[group], group)
    check_settings(cfg)
    assert (cfg.launch.processes, cfg.launch.config) == (processes, config)
    assert cfg.rollout._target_ == "ablate.rollout.VLLMRollout" and cfg.model.name_or_path.startswith("Qwen/")
    assert (cfg.lr, cfg.max_completion_length, cfg.batch_size // cfg.num_generations) == (5e-7, 1024, 128)
    assert planned_steps(cfg, 100_000) == 782  # one epoch of the paper's 100k questions, 128 prompts a step


def test_micro_batches_accumulate_to_the_step_s_batch(tmp_path):
    from ablate.train import check_settings, training_args

    args = training_args(compose_train("batch_size=32", "micro_batch_size=8", "steps=5"), tmp_path)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps, args.max_steps) == (8, 4, 5)
    args = training_args(compose_train("batch_size=32", "epochs=2"), tmp_path, train_questions=20)
    assert args.max_steps == 5  # ceil(2 x 20 questions / 8 prompts a step)
    with pytest.raises(ValueError, match=r"micro_batch_size=6 must divide .* = 32"):
        check_settings(compose_train("batch_size=32", "micro_batch_size=6"))


def _rank_of(pid: int) -> str | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    return next((e.decode()[5:] for e in env if e.startswith(b"RANK=")), None)


@pytest.mark.slow
def test_a_rank_killed_fails_the_run_and_the_other_rank_goes(tmp_path):
    import signal
    import time

    run = [sys.executable, "-m", "ablate", "train", "launch.processes=2", "steps=200", "batch_size=8",
           "eval_limit=16", "max_completion_length=16", "console_every=1",
           f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"output_dir={tmp_path}/run"]  # fmt: skip
    log = open(tmp_path / "out.log", "w")  # noqa: SIM115 (the process writes it)
    proc = subprocess.Popen(run, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    deadline = time.monotonic() + 600
    while "step 3/200" not in (tmp_path / "out.log").read_text():
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "out.log").read_text()[-3000:]
        time.sleep(1)
    ranks = {_rank_of(p.pid): p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
    os.kill(ranks["1"], signal.SIGKILL)
    assert proc.wait(timeout=300) != 0
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        (status,) = db.execute("select status from runs").fetchall()
        errors = db.execute("select value from tags where key = 'error'").fetchall()
    assert status == ("FAILED",) and errors  # rank 0's run ends FAILED, with the reason
    time.sleep(2)
    assert _rank_of(ranks["0"]) is None  # the other rank is gone too


def test_a_run_that_was_not_launched_as_its_ranks_says_so(tmp_path):
    from ablate.train import run

    with pytest.raises(ValueError, match=r"launch\.processes=2, but this run has 1 process"):
        run(compose_train("launch.processes=2", f"output_dir={tmp_path}/run"))
    assert not (tmp_path / "run").exists()
