"""The quick-look result table of a study, and the same table as metrics of its MLflow run."""

import math

import pandas as pd

from ablate.sweep.results import summary_metrics


def test_each_variant_s_means_become_metrics_of_the_study_run():
    table = pd.DataFrame(
        {
            "reward": ["correctness", "rlev"],
            "reward.alpha": [float("nan"), 10.0],
            "n": [3, 3],
            "H-Acc": [50.0, 52.5],
            "length": [41.0, float("nan")],
        }
    )
    metrics = {m.key: m.value for m in summary_metrics(table)}
    assert metrics == {
        "h_acc/correctness": 50.0,
        "length/correctness": 41.0,
        "h_acc/rlev a:10": 52.5,
    }


def test_a_search_logs_its_best_trial():
    table = pd.DataFrame({"trial": [4, 1], "reward.alpha": [3.0, 9.0], "H-Acc": [61.0, 55.0]})
    (metric,) = summary_metrics(table, grid=False)
    assert (metric.key, metric.value) == ("h_acc/best", 61.0)
    assert math.isfinite(metric.timestamp) and metric.timestamp > 0
