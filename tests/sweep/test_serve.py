"""The vLLM servers a sweep runs for its workers (``rollout.managed=true``): GPUs, ports, lifecycle.

vLLM does not run on a CPU, so the lifecycle tests start a real HTTP server in its place: a process
that answers ``/health`` as vLLM's server does and reports the environment it was started with. The
GPU test (``tests/test_gpu.py``) runs a sweep against real vLLM servers.
"""

import json
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ablate.config import compose
from ablate.rollout import VLLMServerRollout
from ablate.sweep.pool import worker_env
from ablate.sweep.serve import (
    HOST,
    SERVER_ENV,
    Server,
    Servers,
    check_managed,
    server_command,
    server_model,
    slot_gpus,
)
from ablate.sweep.study import StudyConfig
from tests.helpers import FAST

MANAGED = ["rollout=vllm_server", "rollout.managed=true"]
TINY = [o for o in FAST if o.startswith("model.")]

# Answers /health after a second's start-up (as vLLM does once loaded) and /env with its environment.
STAND_IN = textwrap.dedent("""
    import http.server, json, os, sys, time
    time.sleep(1.0)
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(dict(os.environ)).encode() if self.path == "/env" else b"ok"
            self.send_response(200 if self.path in ("/health", "/env") else 404)
            self.end_headers()
            self.wfile.write(body)
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
""")


def get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=5) as response:
        return response.read()


def study(workers: int = 1, devices: int = 1, **grid) -> OmegaConf:
    cfg = OmegaConf.structured(StudyConfig)
    cfg.sweep.name, cfg.sweep.workers, cfg.sweep.devices_per_trial = "s", workers, devices
    cfg.grid = grid
    return cfg


def test_a_worker_s_server_takes_the_last_gpus_of_its_group(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpus = list(range(8))
    assert [slot_gpus(s, gpus, 3, 1) for s in range(2)] == [([0, 1, 2], [3]), ([4, 5, 6], [7])]
    assert slot_gpus(0, gpus, 6, 2) == ([0, 1, 2, 3, 4, 5], [6, 7])
    env = [worker_env(s, 2, gpus, devices=3, server_devices=1)["CUDA_VISIBLE_DEVICES"] for s in range(2)]
    assert env == ["0,1,2", "4,5,6"]  # the trial's ranks never see their server's GPU
    with pytest.raises(ValueError, match=r"devices_per_trial=7 \+ rollout.devices=2, but only 8 GPU"):
        slot_gpus(0, gpus, 7, 2)


def test_managed_servers_are_refused_where_they_cannot_work():
    base = compose(MANAGED)
    assert check_managed(study(workers=2), base, [0, 1, 2, 3]) is True
    assert check_managed(study(workers=9), compose(["rollout=hf"]), []) is False
    with pytest.raises(ValueError, match=r"sweep.workers=3 .* 2 group\(s\) of 1 \+ 1; set sweep.workers<=2"):
        check_managed(study(workers=3), base, [0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"\['model.name_or_path'\] cannot vary"):
        check_managed(study(**{"model.name_or_path": ["a", "b"], "reward": ["rlev"]}), base, [0, 1])
    with pytest.raises(ValueError, match=r"only 0 GPU\(s\)"):
        check_managed(study(), base, [])
    several = study()
    several.sweep.trials_per_worker = 2
    with pytest.raises(ValueError, match=r"set sweep.trials_per_worker=1 \(not 2\)"):
        check_managed(several, base, [0, 1])


def test_the_server_command_is_trl_s_vllm_serve_with_the_rollout_s_settings():
    settings = ["rollout.devices=2", "rollout.gpu_memory_utilization=0.5", "rollout.max_model_length=2048"]
    rollout = compose([*MANAGED, *settings, "rollout.extra_args=[--enforce-eager]"]).rollout
    command = server_command(rollout, "Qwen/Qwen2.5-7B", 8123)
    assert command[:5] == [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", "Qwen/Qwen2.5-7B"]
    flags = dict(zip(command[5::2], command[6::2], strict=False))
    assert flags["--host"] == HOST and flags["--port"] == "8123" and flags["--tensor-parallel-size"] == "2"
    assert flags["--gpu-memory-utilization"] == "0.5" and flags["--max-model-len"] == "2048"
    assert (
        command[command.index("--weight-transfer-config") + 1] == '{"backend": "nccl"}'
    )  # TRL's weight sync
    assert command[-1] == "--enforce-eager"
    assert server_model(instantiate(compose(["model=qwen2_5_7b"]).model)) == "Qwen/Qwen2.5-7B"
    built = Path(server_model(instantiate(compose(["model=tiny", *TINY]).model)))
    assert built.is_absolute() and (built / "config.json").exists()  # a model built here: its directory


def test_a_trial_of_a_managed_sweep_talks_to_its_worker_s_server_and_starts_none(tmp_path):
    server = Server(proc=None, port=8123, group_port=51300, gpus=[1], log_path=tmp_path / "vllm0.log")
    trial = compose([*MANAGED, *server.overrides()]).rollout
    assert (trial.managed, trial.host, trial.port, trial.group_port) == (False, HOST, 8123, 51300)
    with pytest.raises(ValueError, match="only ablate sweep starts vLLM servers"):
        VLLMServerRollout(managed=True)  # ablate train rollout.managed=true: refused before anything loads


def test_each_worker_gets_a_server_of_its_own_ports_and_gpus_and_it_goes_with_the_worker(tmp_path):
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    servers = Servers(compose(MANAGED), [0, 1, 2, 3], 1, tmp_path / "logs",
                      command=lambda port: [sys.executable, str(script), str(port)])  # fmt: skip
    try:
        first, second = servers.start(0, "vllm0_0001"), servers.start(1, "vllm1_0002")
        assert len({first.port, first.group_port, second.port, second.group_port}) == 4
        envs = [json.loads(get(s.port, "/env")) for s in (first, second)]
        assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["1", "3"]  # the last GPU of each group
        assert all(e[k] == v for e in envs for k, v in SERVER_ENV.items())
        assert (tmp_path / "logs/vllm1_0002.log").exists()
        servers.stop(0)  # its worker exited
        assert not first.alive() and second.alive()
        again = servers.start(0, "vllm0_0003")  # the slot's next worker: a fresh server
        assert again.alive() and get(again.port, "/health") == b"ok" and again.gpus == [1]
    finally:
        servers.stop()
    assert not any(s.alive() for s in (first, second, again)) and not servers.running
    with pytest.raises(OSError):
        get(second.port, "/health")


def test_a_server_that_dies_at_start_fails_with_its_log(tmp_path):
    crash = [sys.executable, "-c", "import sys; print('CUDA out of memory'); sys.exit(3)"]
    servers = Servers(compose(MANAGED), [0, 1], 1, tmp_path, command=lambda port: crash)
    with pytest.raises(
        RuntimeError, match=r"(?s)vLLM server on GPUs \[1\] exited \(3\):.*CUDA out of memory"
    ):
        servers.start(0, "vllm0_0001")
