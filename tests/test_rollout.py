"""rollout=hf|vllm|vllm_server: who samples the training completions."""

import importlib.util
import subprocess
import sys

import pytest

from ablate.train import training_args
from tests.helpers import compose_train

NO_VLLM = importlib.util.find_spec("vllm") is None


def test_hf_rollouts_keep_vllm_off(tmp_path):
    assert training_args(compose_train("rollout=hf"), tmp_path).use_vllm is False


@pytest.mark.skipif(not NO_VLLM, reason="vLLM is installed here")
@pytest.mark.parametrize("rollout", ["vllm", "vllm_server"])
def test_vllm_without_vllm_is_one_line_before_anything_loads(rollout, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "ablate", "train", f"rollout={rollout}", "data=jsonl",
         f"data.path={tmp_path}/missing.jsonl", f"output_dir={tmp_path}/run"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert "vLLM is not installed" in done.stderr and "use rollout=hf" in done.stderr
    assert "missing.jsonl" not in done.stderr and "Traceback" not in done.stderr  # before the data is read
    assert not (tmp_path / "run").exists()
