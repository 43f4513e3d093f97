"""Study files: every shipped study loads and composes; mistakes name the file, key and choices."""

import pandas as pd
import pytest

from ablate import metrics
from ablate.names import METRICS
from ablate.sweep.launcher import check_configs
from ablate.sweep.study import STUDIES_DIR, grid_cells, load_study, override, study_choices, trial_overrides
from tests.helpers import write_study

STUDIES = sorted(p.stem for p in STUDIES_DIR.glob("*.yaml"))
PAPER = {"quickstart", "paper_table1", "paper_table3_noisy", "paper_table4_ablation", "paper_table5_alpha",
         "alpha_search", "noise_curve"}  # fmt: skip


def test_the_issue_s_studies_ship():
    assert set(study_choices()) >= PAPER


@pytest.mark.parametrize("name", STUDIES)
def test_every_study_loads_and_every_trial_config_composes(name):
    cfg = load_study(name)
    assert cfg.sweep.name == name and cfg.description
    base = check_configs(cfg, grid_cells(cfg) if cfg.grid else [])  # raises on any bad cell
    assert base.tracking.uri.startswith("sqlite:///")


def test_grids_have_the_paper_s_cells():
    cells = grid_cells(load_study("paper_table4_ablation"))
    assert [c["reward"] for c in cells if c["seed"] == 0] == [
        "correctness", "uniform", "shuffled", "multiplicative", "rlev"
    ]  # fmt: skip
    assert len(cells) == 15
    alphas = {c["reward.alpha"] for c in grid_cells(load_study("paper_table5_alpha"))}
    assert alphas == {1, 5, 10, 15, 20}
    table1 = grid_cells(load_study("paper_table1"))
    assert {(c["algo"], c["reward"]) for c in table1} == {
        (a, r) for a in ("reinforce_pp", "rloo", "grpo") for r in ("correctness", "rlev")
    }
    quick = grid_cells(load_study("quickstart"))
    assert len(quick) == 5 and {c["seed"] for c in quick} == {0}


def test_objective_metrics_are_the_eval_metrics():
    df = pd.DataFrame({"value": [0.1, 0.2, 0.3, 0.4, 0.5], "correct": [1, 0, 1, 0, 1], "length": [3] * 5})
    assert set(metrics.summary(df)) - {"n"} == set(METRICS)


def test_train_and_sweep_overrides_apply():
    cfg = load_study("quickstart", ["sweep.workers=3", "sweep.name=mine"], ["steps=5", "model=tiny"])
    assert cfg.sweep.workers == 3 and cfg.sweep.name == "mine"
    assert cfg.overrides[-2:] == ["steps=5", "model=tiny"]


def test_unknown_study_lists_the_choices():
    with pytest.raises(ValueError, match=r"study='quickstrat'.*valid choices are .*quickstart"):
        load_study("quickstrat")


def test_bad_study_file_names_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("grid: {reward: [rlev]}\nn_trails: 3\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: n_trails: Key 'n_trails' not in 'StudyConfig'"):
        load_study(str(path))
    path.write_text("grid: {reward: [rlev]}\nobjectives: [{metric: hacc}]\n")
    with pytest.raises(ValueError, match=r"objectives\[0\]\.metric='hacc'; valid choices are acc, h_acc"):
        load_study(str(path))
    path.write_text("grid: {reward: [rlev]}\nspace: {x: {_target_: optuna.distributions.IntDistribution}}\n")
    with pytest.raises(ValueError, match="exactly one of 'grid'"):
        load_study(str(path))
    path.write_text("grid: {reward: [rlev]}\nsampler: {_target_: optuna.samplers.NoSuchSampler}\n")
    with pytest.raises(ValueError, match=r"sampler\._target_='optuna\.samplers\.NoSuchSampler' cannot be"):
        load_study(str(path))


def test_bad_sweep_override_names_the_key():
    expected = r"sweep\.workers: .*'many'.*valid keys are sweep\.name, sweep\.workers"
    with pytest.raises(ValueError, match=expected):
        load_study("quickstart", ["sweep.workers=many"])


def test_bad_train_override_fails_before_training():
    cfg = load_study("quickstart", train_overrides=["algo=ppo"])
    with pytest.raises(Exception, match="Could not find 'algo/ppo'"):
        check_configs(cfg, grid_cells(cfg))


def test_a_trial_has_one_process_per_device(tmp_path):
    study = write_study(tmp_path, grid={"seed": [0]})  # one cell: every check composes each cell

    def checked(*sweep: str, train: tuple[str, ...] = ()):
        cfg = load_study(str(study), sweep_overrides=["sweep.gpus=[]", *sweep], train_overrides=list(train))
        check_configs(cfg, grid_cells(cfg))
        return cfg

    assert checked(train=("launch.processes=2",)).sweep.devices_per_trial == 2  # the runs' own processes
    with pytest.raises(
        ValueError, match=r"launch\.processes=2 with sweep\.devices_per_trial=4: a trial has one"
    ):
        checked("sweep.devices_per_trial=4", train=("launch.processes=2",))
    cfg = checked("sweep.devices_per_trial=2")  # two CPU ranks per trial
    assert "launch.processes=2" in trial_overrides(cfg, {"seed": 1})
    assert trial_overrides(cfg, {"seed": 1})[-1] == "seed=1"  # the cell's value comes last: it wins
    with pytest.raises(ValueError, match=r"launch\.config=zero3: DeepSpeed and FSDP need CUDA devices"):
        checked("sweep.devices_per_trial=2", train=("launch.config=zero3",))
    with pytest.raises(ValueError, match=r"sweep.devices_per_trial=0: needs at least 1"):
        load_study(str(study), sweep_overrides=["sweep.devices_per_trial=0"])


def test_override_format():
    assert override("reward", "rlev") == "reward=rlev"
    assert override("reward.alpha", 2.5) == "reward.alpha=2.5"
    assert override("save_model", True) == "save_model=true"
    assert override("eval_limit", None) == "eval_limit=null"
