"""The EOS-gradient diagnostic shows RLEV's mechanism: s(x) multiplies the EOS-logit gradient."""

import json

import pandas as pd
import pytest

from ablate.data.synthetic import SyntheticExams
from ablate.diagnostics.eos import BUCKETS
from ablate.train import run
from tests.helpers import FAST, compose_train

NOT_DATA = [o for o in FAST if not o.startswith("data.")]


def exams_worth(path, score: int) -> str:
    """The same easy questions (answers 2..4), each worth ``score`` of 100 points."""
    table = SyntheticExams(num_exams=6, terms=(2, 2), max_operand=2, seed=0).read()
    with path.open("w") as f:
        for row in table.itertuples():
            f.write(json.dumps({"prompt": row.prompt, "answer": row.answer, "score": score, "total": 100,
                                "exam_id": row.exam_id, "id": row.id}) + "\n")  # fmt: skip
    return str(path)


def first_step_eos_grad(tmp_path, reward: str, score: int) -> float:
    data = exams_worth(tmp_path / f"exams_{score}.jsonl", score)
    cfg = compose_train(
        *NOT_DATA, "algo=rloo", f"reward={reward}", "steps=1", "batch_size=32", "data=jsonl",
        f"data.path={data}", "data.test_fraction=0.2", f"output_dir={tmp_path}/{reward}_{score}",
        f"tracking.uri=sqlite:///{tmp_path}/m.db",
    )  # fmt: skip
    run(cfg)
    log = pd.read_csv(tmp_path / f"{reward}_{score}/train_log.csv")
    assert log["reward"].iloc[0] > 0  # some answers were right, so there is a gradient to compare
    # Equal values: the 20% buckets are cut by id, so every bucket's gradient scales alike; their sum
    # does not depend on which questions the batch drew into which bucket.
    return float(sum(log[f"eos/grad_abs_{b}"].iloc[0] for b in BUCKETS))


@pytest.mark.slow
def test_rlev_scales_the_eos_gradient_by_the_value_scale_and_correctness_does_not(tmp_path):
    # Same seed, same questions, same sampled completions: only the value differs (0.02 vs 0.08).
    low, high = first_step_eos_grad(tmp_path, "rlev", 2), first_step_eos_grad(tmp_path, "rlev", 8)
    assert high / low == pytest.approx((1 + 10 * 0.08) / (1 + 10 * 0.02), rel=1e-4)  # 1.8 / 1.2
    flat_low = first_step_eos_grad(tmp_path, "correctness", 2)
    flat_high = first_step_eos_grad(tmp_path, "correctness", 8)
    assert flat_high / flat_low == pytest.approx(1.0, rel=1e-6)
