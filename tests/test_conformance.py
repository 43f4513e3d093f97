"""Every reward variant trains one real step with every algorithm (``conf/reward`` x ``conf/algo``)."""

import pandas as pd
import pytest

from ablate.cli import CONF_DIR
from ablate.train import run
from tests.helpers import FAST, compose_train

REWARDS = sorted(p.stem for p in (CONF_DIR / "reward").glob("*.yaml"))
ALGOS = sorted(p.stem for p in (CONF_DIR / "algo").glob("*.yaml"))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


@pytest.mark.slow
@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("reward", REWARDS)
def test_reward_trains_with_algo(reward, algo, store, tmp_path):
    cfg = compose_train(
        *FAST, f"reward={reward}", f"algo={algo}", "steps=1", "eval_limit=4", f"tracking.uri={store}",
        f"output_dir={tmp_path}",
    )  # fmt: skip
    summary = run(cfg)
    log = pd.read_csv(tmp_path / "train_log.csv")
    assert log["step"].tolist() == [1]
    assert f"rewards/{reward}/mean" in log.columns
    low, high = (1.0, 2.0) if reward != "multiplicative" else (1.0, 11.0)
    assert low <= log["reward/scale_mean"].iloc[0] <= high
    assert summary["n"] == 4
