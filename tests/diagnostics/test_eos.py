"""The per-step EOS statistics from token records (the gradients themselves: test_eos_gradient.py)."""

import numpy as np
import pytest

from ablate.diagnostics.eos import EOSGradients


def step(grads: dict[int, list[float]]) -> dict[str, float]:
    """``step_metrics`` of one step whose tokens in bucket b have gradients ``grads[b]``."""
    stats = EOSGradients(eos_token_id=1)
    for bucket, values in grads.items():
        stats.step_tokens["grad"].append(np.array(values))
        stats.step_tokens["prob"].append(np.full(len(values), 0.25))
        stats.step_tokens["bucket"].append(np.full(len(values), bucket))
        stats.step_tokens["pos"].append(np.full(len(values), 2))
    return stats.step_metrics()


def test_ratio_and_share_of_the_top_and_bottom_buckets():
    out = step({0: [0.1, -0.3], 1: [5.0], 2: [0.6, -0.2]})
    assert out["eos/grad_abs_bottom20"] == pytest.approx(0.2)
    assert out["eos/grad_abs_top20"] == pytest.approx(0.4)
    assert out["eos/grad_abs_ratio_top_bottom"] == pytest.approx(2.0)
    assert out["eos/grad_abs_share_top"] == pytest.approx(0.4 / 0.6)


def test_a_step_without_bottom_gradient_has_a_share_but_no_ratio():
    out = step({0: [0.0, 0.0], 2: [0.6, -0.2]})
    assert "eos/grad_abs_ratio_top_bottom" not in out  # 0.4 / 0 is no number
    assert out["eos/grad_abs_share_top"] == 1.0
    assert "eos/grad_abs_share_top" not in step({0: [0.0], 2: [0.0]})  # nothing moved at all
