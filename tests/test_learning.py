"""The tiny model learns: its mean training reward rises clearly over a couple of hundred steps."""

import pandas as pd
import pytest

from ablate.train import run
from tests.helpers import compose_train


@pytest.mark.slow
def test_training_reward_rises_on_the_easy_synthetic_task(tmp_path):
    cfg = compose_train(
        "reward=correctness", "steps=200", "batch_size=16", "num_generations=4", "max_completion_length=12",
        "data.terms=[2,2]", "data.max_operand=2", "lr=1e-3", "eval_limit=16",
        f"output_dir={tmp_path}/run", f"tracking.uri=sqlite:///{tmp_path}/m.db",
    )  # fmt: skip
    run(cfg)
    reward = pd.read_csv(tmp_path / "run/train_log.csv")["reward"]
    first, last = reward.iloc[:40].mean(), reward.iloc[-40:].mean()
    print(f"mean training reward: first 40 steps {first:.3f}, last 40 steps {last:.3f}")
    assert last > 2 * first and last - first > 0.1
