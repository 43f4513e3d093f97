"""Every reward variant trains one real step with every algorithm (``conf/reward`` x ``conf/algo``)."""

import pandas as pd
import pytest

from ablate.config import CONF_DIR
from ablate.train import run
from tests.helpers import FAST, compose_train
from tests.test_train import CHECKS_FAST

REWARDS = sorted(p.stem for p in (CONF_DIR / "reward").glob("*.yaml"))
ALGOS = sorted(p.stem for p in (CONF_DIR / "algo").glob("*.yaml"))
# A reward that reads a column only some data writes trains on that data.
DATA_FOR = {"rlev_shown": [o for o in CHECKS_FAST if not o.startswith(("steps=", "eval_limit="))]}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


@pytest.mark.slow
@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("reward", REWARDS)
def test_reward_trains_with_algo(reward, algo, store, tmp_path):
    cfg = compose_train(
        *DATA_FOR.get(reward, FAST), f"reward={reward}", f"algo={algo}", "steps=1", "eval_limit=4",
        f"tracking.uri={store}", f"output_dir={tmp_path}",
    )  # fmt: skip
    summary = run(cfg)
    log = pd.read_csv(tmp_path / "train_log.csv")
    assert log["step"].tolist() == [1]
    assert f"rewards/{reward}/mean" in log.columns
    low, high = (1.0, 2.0) if reward != "multiplicative" else (1.0, 11.0)
    assert low <= log["reward/scale_mean"].iloc[0] <= high
    assert summary["n"] == 4


def test_a_reward_whose_column_the_data_lacks_is_refused_before_the_model_loads(tmp_path):
    cfg = compose_train(*FAST, "reward=rlev_shown", f"tracking.uri=sqlite:///{tmp_path}/m.db",
                        f"output_dir={tmp_path}/run")  # fmt: skip
    with pytest.raises(ValueError, match=r"reward=rlev_shown needs a 'shown_value' column.*data=checks"):
        run(cfg)
    assert not (tmp_path / "run" / "train_log.csv").exists()
