"""Names that one module writes and another reads: metric keys, MLflow tags, params and artifact
files, Optuna attributes. Each is defined here once, so a writer and its readers cannot drift apart.

This module imports nothing: the lightest reader (a notebook, the report) can take it alone.

>>> eval_key("h_acc"), label("length_gap")
('eval/h_acc', 'length gap top-bottom 20%')
"""

from __future__ import annotations

# --- metrics (ablate.metrics.summary's keys, in the paper's order, and how a table heads them)
LABELS = {
    "acc": "Acc",
    "h_acc": "H-Acc",
    "length": "length",
    "value_density": "value density",
    "acc_top20": "top-20% Acc",
    "acc_bottom20": "bottom-20% Acc",
    "length_gap": "length gap top-bottom 20%",
}
METRICS = tuple(LABELS)  # the final eval metrics: what an objective may name and a table shows
COUNT = "n"  # summary's row count: in metrics.json, not a logged metric
EVAL_PREFIX = "eval/"  # greedy evaluation metrics in MLflow: eval/h_acc, eval/length_bucket0, ...
BUCKETS = ("bottom20", "middle", "top20")  # the value buckets 0, 1, 2 of the EOS diagnostics


def eval_key(metric: str) -> str:
    """The MLflow metric name of an evaluation metric."""
    return f"{EVAL_PREFIX}{metric}"


def label(metric: str) -> str:
    return LABELS.get(metric, metric)


def eos_key(stat: str, bucket: str, position: str = "all") -> str:
    """An EOS diagnostic's metric name: ``eos/grad_abs_top20``, ``eos/prob_middle_terminal``, ...

    >>> eos_key("grad_abs", BUCKETS[-1]), eos_key("prob", "middle", "terminal")
    ('eos/grad_abs_top20', 'eos/prob_middle_terminal')
    """
    return f"eos/{stat}_{bucket}" if position == "all" else f"eos/{stat}_{bucket}_{position}"


EOS_RATIO = "eos/grad_abs_ratio_top_bottom"  # top20 over bottom20 mean |dL/dz_eos|, when bottom20's is not 0
EOS_SHARE_TOP = "eos/grad_abs_share_top"  # top20 / (top20 + bottom20): 0.5 when value does not matter


# --- MLflow: tags of every run, of a sweep's trial runs and of its study run
GROUPS = ("data", "reward", "model", "algo")  # config groups a run is tagged (and grouped) by
TAG_SEED = "seed"
TAG_COMMIT = "git_commit"
TAG_OUTPUT_DIR = "output_dir"
TAG_EOS_BUCKETS = "eos_buckets"
TAG_DEVICE = "ablate.device"  # where a run trained: "cuda:0 (CUDA_VISIBLE_DEVICES=3), 2 processes", "cpu"
TAG_VALUE_SCALE = "ablate.value_scale"  # set when the algorithm removes a per-question reward scale
TAG_STUDY = "ablate.study"  # the study a run belongs to (trial runs and the study run)
TAG_ROLE = "ablate.role"
ROLE_STUDY = "study"  # TAG_ROLE of a study's parent run
ROLE_TRIAL = "trial"  # TAG_ROLE of a study's trial runs (the study's runs table lists these)
TAG_OPTUNA_STUDY = "optuna.study"
TAG_TRIAL_NUMBER = "optuna.trial_number"
TAG_ERROR = "error"  # why a run FAILED
TAG_PRUNED = "pruned"  # why a trial run was KILLED by the pruner
TAG_PARENT = "mlflow.parentRunId"  # MLflow's own
SHARED_VIEW_PREFIX = "mlflow.sharedViewState."  # MLflow's own: a runs-table view a URL can name
PARAM_GRID = "study.grid"  # JSON of the study's grid, on its parent run
PARAM_SPACE = "study.space"
PARAM_N_TRIALS = "study.n_trials"
PARAM_STORAGE = "study.storage"

# --- files in a run directory, and the same names as MLflow artifacts
CONFIG_FILE = "config.yaml"
PREDICTIONS = "predictions.jsonl"
PREDICTIONS_START = "predictions_start.jsonl"  # the policy before training (diagnostics.start)
METRICS_FILE = "metrics.json"
TRAIN_LOG = "train_log.csv"
SAMPLES = "samples.jsonl"
LENGTH_BY_VALUE = "length_by_value.csv"
EOS_TRAJECTORIES = "eos_trajectories.csv"
STOPS_FILE = "stops.csv"  # pi(stop) after each answer line, at start and end (diagnostics.stops)
RESULTS_CSV = "results.csv"  # a study's result table, on its parent run
RESULTS_TXT = "results.txt"
RESULTS_TABLE = "results.json"  # the same table as an MLflow table (mlflow.log_table), which the UI renders
TRIAL_OUTCOME = "trial_outcome.json"  # rank 0 of a multi-process trial to its worker: what to tell Optuna
RANK_ERRORS = "rank_errors"  # a multi-process trial's ranks to its worker: <rank>.json, a failed rank's error

# --- Optuna: a trial's user attributes, and a study's
ATTR_WORKER = "worker"  # host:pid of the process running the trial
ATTR_METRICS = "metrics"  # the final eval metrics
ATTR_ERROR = "error"
ATTR_DUPLICATE_OF = "duplicate_of"  # the trial that already holds this grid cell
ATTR_OUTPUT_DIR = "output_dir"
ATTR_RUN_ID = "mlflow_run_id"
ATTR_MLFLOW_URL = "mlflow_url"  # the trial's run in the MLflow UI
STUDY_ATTR_SPEC = "ablate.spec"  # what makes two launches the same study (overrides, grid, objectives)
STUDY_ATTR_PARENT = "mlflow_parent_run_id"  # the study's MLflow run
