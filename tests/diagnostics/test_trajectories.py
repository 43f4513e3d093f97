"""EOS-probability trajectories at evaluation (the paper's Figure 2), table and figure."""

import pandas as pd
import pytest
from mlflow import MlflowClient

from ablate.diagnostics.trajectories import eos_trajectories, plot_eos_trajectories
from ablate.train import run
from tests.helpers import FAST, compose_train


def predictions(n: int) -> pd.DataFrame:
    # Question i is worth i/100 and its answer ends after i % 5 + 1 tokens; pi(eos) = position / 10.
    rows = [
        {"id": f"q{i}", "value": i / 100, "eos_probs": [p / 10 for p in range(i % 5 + 2)]} for i in range(n)
    ]
    return pd.DataFrame(rows)


def test_table_holds_top_and_bottom_k_with_every_position():
    table = eos_trajectories(predictions(20), k=4)
    groups = table.groupby("group")["id"].unique()
    assert sorted(groups["top 4 by value"]) == ["q16", "q17", "q18", "q19"]
    assert sorted(groups["bottom 4 by value"]) == ["q0", "q1", "q2", "q3"]
    q17 = table[table["id"] == "q17"]
    assert q17["position"].tolist() == [0, 1, 2, 3] and q17["eos_prob"].tolist() == pytest.approx(
        [0, 0.1, 0.2, 0.3]
    )
    assert q17["relative_position"].tolist() == [0.0, 0.2, 0.5, 0.7]  # floor(10 * position / 4) / 10
    assert (
        len(eos_trajectories(predictions(6), k=200).groupby("group")["id"].nunique().unique()) == 1
    )  # 3 and 3


def test_figure_files(tmp_path):
    paths = plot_eos_trajectories(eos_trajectories(predictions(20), k=4), tmp_path / "fig")
    assert [p.suffix for p in paths] == [".png", ".svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and b"<svg" in paths[1].read_bytes()[:500]


def test_run_logs_trajectories_and_draws_a_baseline_beside_them(tmp_path):
    db = f"sqlite:///{tmp_path}/m.db"
    common = [*FAST, "eval_limit=12", "diagnostics.eos_top_k=3", f"tracking.uri={db}"]
    run(compose_train(*common, "reward=correctness", f"output_dir={tmp_path}/base"))
    client = MlflowClient(db)
    (base,) = client.search_runs([client.get_experiment_by_name("ablate").experiment_id])
    assert {"eos_trajectories.csv", "eos_trajectories.png", "eos_trajectories.svg"} <= {
        a.path for a in client.list_artifacts(base.info.run_id)
    }
    run(compose_train(*common, "reward=rlev", f"output_dir={tmp_path}/rlev",
                      f"diagnostics.baseline_run_id={base.info.run_id}"))  # fmt: skip
    table = pd.read_csv(tmp_path / "rlev/eos_trajectories.csv")
    assert set(table["run"]) == {"rlev", "baseline base"}
    assert table.groupby("run")["id"].nunique().tolist() == [6, 6]  # 3 top + 3 bottom each
