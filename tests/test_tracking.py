"""Runs land in a real MLflow server on 127.0.0.1, for every algorithm; failures are visible."""

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from hydra.utils import instantiate
from mlflow import MlflowClient
from transformers import AutoModelForCausalLM

from ablate.connect import check_reachable, redact
from ablate.models import load_model
from ablate.tracking import params_of
from ablate.train import run
from tests.helpers import FAST, MlflowServer, compose_train, free_port

ALGOS = ["grpo", "rloo", "reinforce_pp"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow")).start()
    yield srv
    srv.stop()


@pytest.mark.slow
@pytest.mark.parametrize("algo", ALGOS)
def test_run_is_logged_to_the_server(algo, server, tmp_path):
    steps = 4
    cfg = compose_train(
        *FAST, f"algo={algo}", f"steps={steps}", "save_model=true", "tracking=server",
        f"tracking.uri={server.uri}", f"tracking.experiment=test-{algo}", f"output_dir={tmp_path}/run",
    )  # fmt: skip
    summary = run(cfg)

    client = MlflowClient(server.uri)
    (mlrun,) = client.search_runs([client.get_experiment_by_name(f"test-{algo}").experiment_id])
    run_id = mlrun.info.run_id
    assert mlrun.info.status == "FINISHED"
    assert mlrun.data.tags["algo"] == {"grpo": "GRPOTrainer", "rloo": "RLOOTrainer"}.get(
        algo, "ReinforcePPTrainer"
    )
    assert mlrun.data.tags["reward"] == "rlev" and mlrun.data.tags["seed"] == "0"
    assert mlrun.data.params["steps"] == str(steps) and mlrun.data.params["reward.alpha"] == "10"
    assert mlrun.data.params["algo.args.beta"] == "0.0"
    for name in (
        "loss",
        "reward",
        "reward/scale_mean",
        "completions/mean_length",
        "completions/clipped_ratio",
    ):
        assert [m.step for m in client.get_metric_history(run_id, name)] == list(range(1, steps + 1)), name
    eos = [k for k in mlrun.data.metrics if k.startswith("eos/prob_")]
    assert eos  # the EOS diagnostics are on by default and logged every step
    covered = {m.step for name in eos for m in client.get_metric_history(run_id, name)}
    assert covered == set(range(1, steps + 1))
    for name, value in summary.items():
        if name != "n":
            (point,) = client.get_metric_history(run_id, f"eval/{name}")
            assert point.step == steps and point.value == pytest.approx(value, nan_ok=True)
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "predictions.jsonl", "samples.jsonl", "metrics.json", "train_log.csv"} <= artifacts
    table = pd.read_json(client.download_artifacts(run_id, "predictions.jsonl", str(tmp_path)), lines=True)
    assert len(table) == 16

    initial, _ = load_model(instantiate(cfg.model))
    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "run/model")
    moved = max(
        (a - b).abs().max().item() for a, b in zip(initial.parameters(), trained.parameters(), strict=True)
    )
    assert moved > 0


def test_a_run_whose_data_is_missing_leaves_no_mlflow_run_and_no_directory(tmp_path):
    db = f"sqlite:///{tmp_path}/mlflow.db"
    not_data = [o for o in FAST if not o.startswith("data.")]
    cfg = compose_train(*not_data, "data=jsonl", f"data.path={tmp_path}/missing.jsonl", f"tracking.uri={db}",
                        f"output_dir={tmp_path}/run")  # fmt: skip
    with pytest.raises(FileNotFoundError, match=r"missing\.jsonl"):
        run(cfg)
    client = MlflowClient(db)
    assert client.search_runs([client.get_experiment_by_name("ablate").experiment_id]) == []
    assert not (tmp_path / "run").exists()


def test_unreachable_server_fails_fast_naming_the_uri(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "ablate", "train", "tracking=server", f"tracking.uri={uri}", "output_dir=run"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert time.monotonic() - start < 10
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"MLflow tracking server {uri} is not reachable" in done.stderr
    assert not (tmp_path / "run").exists()  # nothing trained, no run directory left behind


def test_check_reachable_names_uri_without_password():
    with pytest.raises(ConnectionError, match=r"http://alice:\*\*\*@127\.0\.0\.1"):
        check_reachable(f"http://alice:s3cret@127.0.0.1:{free_port()}", timeout_s=2)


def test_secrets_never_reach_params_or_config():
    tree = {"hf_token": "hf_abc", "db": "postgresql://u:pw@host/db", "api_key": "k", "lr": 0.1}
    tree["nested"] = {"password": "p"}
    expected = {"hf_token": "***", "db": "postgresql://u:***@host/db", "api_key": "***", "lr": 0.1}
    assert redact(tree) == expected | {"nested": {"password": "***"}}
    cfg = compose_train(
        "tracking=server", "tracking.uri=http://bob:hunter2@127.0.0.1:5000", "+model.hf_token=abc"
    )
    params = params_of(cfg)
    assert params["tracking.uri"] == "http://bob:***@127.0.0.1:5000"
    assert params["model.hf_token"] == "***"
    assert not any("hunter2" in v or v == "abc" for v in params.values())


def test_unusable_artifact_location_fails_the_run_clearly(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the artifact folder should be")
    db = f"sqlite:///{tmp_path}/mlflow.db"
    where = [
        f"tracking.uri={db}",
        "tracking.experiment=blocked",
        f"tracking.artifact_location={blocker}/artifacts",
    ]
    cfg = compose_train(*FAST, *where, f"output_dir={tmp_path}/run")
    with pytest.raises(NotADirectoryError, match=r"not_a_dir"):
        run(cfg)
    client = MlflowClient(db)
    (mlrun,) = client.search_runs([client.get_experiment_by_name("blocked").experiment_id])
    assert mlrun.info.status == "FAILED"
    assert "NotADirectoryError" in mlrun.data.tags["error"] and "not_a_dir" in mlrun.data.tags["error"]
    assert not (tmp_path / "run" / "train_log.csv").exists()  # it failed before training


def test_secrets_never_reach_the_config_artifact(tmp_path):
    db = f"sqlite:///{tmp_path}/mlflow.db"
    secrets = ["+extra.hf_token=hf_SECRET", "+extra.db_url=postgresql://u:pw-SECRET@h/db"]
    cfg = compose_train(*FAST, "steps=1", f"tracking.uri={db}", f"output_dir={tmp_path}/run", *secrets)
    run(cfg)
    client = MlflowClient(db)
    (mlrun,) = client.search_runs([client.get_experiment_by_name("ablate").experiment_id])
    logged = (tmp_path / "run" / "config.yaml").read_text()
    remote = Path(client.download_artifacts(mlrun.info.run_id, "config.yaml", str(tmp_path))).read_text()
    for text in (logged, remote, str(mlrun.data.params)):
        assert "SECRET" not in text and "***" in text


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs (needs root, as in CI); the artifacts of one run do not fit on it."""
    mount = tmp_path / "small_disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_disk_full_on_the_artifact_location_fails_the_run_and_keeps_what_was_logged(tmp_path, small_disk):
    db = f"sqlite:///{tmp_path}/mlflow.db"
    where = [f"tracking.uri={db}", "tracking.experiment=full", f"tracking.artifact_location={small_disk}"]
    cfg = compose_train(*FAST, "steps=3", *where, f"output_dir={tmp_path}/run")
    with pytest.raises(OSError, match="No space left on device"):
        run(cfg)
    client = MlflowClient(db)
    (mlrun,) = client.search_runs([client.get_experiment_by_name("full").experiment_id])
    assert mlrun.info.status == "FAILED" and "No space left on device" in mlrun.data.tags["error"]
    assert [m.step for m in client.get_metric_history(mlrun.info.run_id, "loss")] == [1, 2, 3]
    assert "eval/h_acc" in mlrun.data.metrics and (tmp_path / "run" / "train_log.csv").exists()


def test_a_sigterm_while_a_run_ends_is_held_until_it_has_ended_failed(tmp_path, monkeypatch):
    # A rank whose peer died: its collective raised, and the launcher's SIGTERM arrives while the run
    # ends. Delivered at once, fail_on_sigterm's exception would leave the run open, and MLflow's exit
    # hook would end it FINISHED (seen in CI as a killed-rank run recorded FINISHED).
    import os
    import signal

    import mlflow

    from ablate.launch import RankStopped, fail_on_sigterm
    from ablate.tracking import TrackedRun, TrackingConfig

    set_tag = mlflow.set_tag

    def set_tag_under_sigterm(*args):
        os.kill(os.getpid(), signal.SIGTERM)  # delivered before set_tag returns, unless held
        time.sleep(0.1)
        return set_tag(*args)

    monkeypatch.setattr(mlflow, "set_tag", set_tag_under_sigterm)
    handler = signal.getsignal(signal.SIGTERM)
    fail_on_sigterm()
    cfg = TrackingConfig(uri=f"sqlite:///{tmp_path}/mlflow.db")
    try:
        with pytest.raises(RankStopped), TrackedRun(cfg, "rank 0", {}) as tracked:
            raise RuntimeError("gloo/transport/tcp: Connection closed by peer")
    finally:
        signal.signal(signal.SIGTERM, handler)
        while mlflow.active_run():
            mlflow.end_run("KILLED")  # only if the run was left open: the assertions below say so
    run = MlflowClient(cfg.uri).get_run(tracked.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "RuntimeError: gloo/transport/tcp: Connection closed by peer"
