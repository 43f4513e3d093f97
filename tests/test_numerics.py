"""The numerics fingerprint: the same wherever the kernels round alike, another where they do not."""

import os
import subprocess
import sys

import pytest

PRINT = "from ablate.numerics import fingerprint; print(fingerprint())"


def fingerprint_with(**env: str) -> str:
    out = subprocess.run([sys.executable, "-c", PRINT], env={**os.environ, **env}, capture_output=True,
                         text=True, timeout=120, check=True)  # fmt: skip
    return out.stdout.strip()


def test_the_thread_count_does_not_change_it_and_another_blas_path_does():
    import torch

    one, two = fingerprint_with(OMP_NUM_THREADS="1"), fingerprint_with(OMP_NUM_THREADS="2")
    assert one == two and len(one) == 16  # the warm starts' SFT gives the same weights on 1 or 2 threads
    if not torch.backends.mkl.is_available():
        pytest.skip("no MKL: its reproducible-results mode is what changes the kernels here")
    assert fingerprint_with(OMP_NUM_THREADS="1", MKL_CBWR="COMPATIBLE") != one  # MKL's SSE2 path
