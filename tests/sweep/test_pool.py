"""The worker pool's environments: a trial's GPUs, or a share of the CPU cores."""

import pytest

from ablate.sweep.pool import worker_env


def test_each_trial_process_gets_one_gpu_round_robin(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert [worker_env(slot, 4, [2, 5])["CUDA_VISIBLE_DEVICES"] for slot in range(4)] == ["2", "5", "2", "5"]


def test_cpu_workers_share_the_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    env = worker_env(0, 2, [])
    assert env["OMP_NUM_THREADS"] == "4" and env["CUDA_VISIBLE_DEVICES"] == ""  # sweep.gpus=[]: no GPU
    assert worker_env(0, 16, [])["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert worker_env(0, 2, [])["OMP_NUM_THREADS"] == "3"  # the user's setting wins


def test_multi_device_trials_get_whole_groups_of_gpus(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpus = list(range(8))
    groups = [worker_env(slot, 4, gpus, devices=2)["CUDA_VISIBLE_DEVICES"] for slot in range(5)]
    assert groups == ["0,1", "2,3", "4,5", "6,7", "0,1"]  # a fifth worker shares the first group
    three = [worker_env(slot, 3, gpus, devices=3)["CUDA_VISIBLE_DEVICES"] for slot in range(3)]
    assert three == ["0,1,2", "3,4,5", "0,1,2"]  # never a group across the end: GPUs 6 and 7 stay free
    with pytest.raises(ValueError, match=r"sweep.devices_per_trial=4, but only 2 GPU\(s\): \[3, 5\]"):
        worker_env(0, 1, [3, 5], devices=4)


def test_cpu_ranks_share_the_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert worker_env(0, 2, [], devices=2)["OMP_NUM_THREADS"] == "2"  # 2 workers x 2 ranks on 8 cores
