"""The worker pool's environments: one GPU per trial process, or a share of the CPU cores."""

from ablate.sweep.pool import worker_env


def test_each_trial_process_gets_one_gpu_round_robin(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert [worker_env(slot, 4, [2, 5])["CUDA_VISIBLE_DEVICES"] for slot in range(4)] == ["2", "5", "2", "5"]


def test_cpu_workers_share_the_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    env = worker_env(0, 2, [])
    assert env["OMP_NUM_THREADS"] == "4" and "CUDA_VISIBLE_DEVICES" not in env
    assert worker_env(0, 16, [])["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert worker_env(0, 2, [])["OMP_NUM_THREADS"] == "3"  # the user's setting wins
