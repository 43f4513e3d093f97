"""The warm start: solution styles, the SFT data, the cached checkpoint and ``ablate warmstart``."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ablate.data.synthetic import SyntheticExams
from ablate.models import TinyModelConfig, load_model
from ablate.warmstart import (
    NUMERICS,
    SHIPPED,
    SHIPPED_KERNELS,
    STYLES,
    WarmStartConfig,
    sft_dataset,
    solution,
    warm_path,
    written_style,
)

SMALL = ["model.base.hidden_size=32", "model.base.layers=1", "model.base.heads=2",
         "model.base.intermediate_size=64", "model.max_steps=3", "model.batch_size=8",
         "model.data.num_exams=6", "model.eval_questions=8", "model.max_new_tokens=16"]  # fmt: skip


def small_config(tmp_path, **changes) -> WarmStartConfig:
    base = TinyModelConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64, cache_dir=str(tmp_path))
    fields = dict(base=base, data=SyntheticExams(num_exams=6, seed=1000), max_steps=3, batch_size=8,
                  eval_questions=8, max_new_tokens=16, cache_dir=str(tmp_path))  # fmt: skip
    return WarmStartConfig(**(fields | changes))


def test_each_style_writes_the_sum_with_less_working_than_the_last():
    terms = [12, 7, 30, 5]
    assert solution(terms, "full") == "12+7=19\n19+30=49\n49+5=54\nAnswer: 54"
    assert solution(terms, "pairs") == "12+7+30=49\n49+5=54\nAnswer: 54"
    assert solution(terms, "direct") == "Answer: 54"
    assert [written_style(solution(terms, s)) for s in STYLES] == list(STYLES)
    with pytest.raises(ValueError, match="valid choices are full, pairs, direct"):
        solution(terms, "sketch")


def test_sft_rows_draw_styles_in_their_shares_and_hold_out_whole_exams(tmp_path):
    cfg = small_config(tmp_path, data=SyntheticExams(num_exams=60, seed=1000),
                       styles={"full": 0.5, "pairs": 0.0, "direct": 0.5})  # fmt: skip
    train, test = sft_dataset(cfg)
    assert set(train["exam_id"]).isdisjoint(test["exam_id"])
    shares = train["style"].value_counts(normalize=True)
    assert "pairs" not in shares and abs(shares["full"] - 0.5) < 0.03
    for row in train.head(50).itertuples():
        assert row.completion.endswith(f"Answer: {row.answer}")
        two_terms = row.completion.count("\n") == 1  # full and pairs write the same single line
        assert written_style(row.completion) == row.style or two_terms
    full = train[train["style"] == "full"]
    assert np.corrcoef(full["completion"].str.len(), full["difficulty"].map(
        {"primary": 2, "junior": 3, "senior": 4, "university": 5, "phd": 6}))[0, 1] > 0.9  # fmt: skip
    with pytest.raises(ValueError, match=r"model.styles: unknown style\(s\) \['sketch'\]; valid choices"):
        sft_dataset(small_config(tmp_path, styles={"sketch": 1.0}))


def test_checkpoint_is_cached_by_config_and_loads_like_any_model(tmp_path):
    cfg = small_config(tmp_path)
    path = warm_path(cfg)
    report = json.loads((path / "warmstart.json").read_text())
    assert report["n"] == 8 and 0 <= report["acc"] <= 100 and report["sft_rows"] > 0
    assert set(report["sampled_by_style"]) >= {"acc"}
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert warm_path(small_config(tmp_path)) == path  # same config: no new training
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    assert warm_path(small_config(tmp_path, max_steps=4)) != path  # any SFT key is part of the key
    assert small_config(tmp_path, eval_questions=99).key() == cfg.key()  # evaluation is not
    model, tokenizer = load_model(cfg)
    assert model.config.hidden_size == 32 and tokenizer.decode(tokenizer("1+2=3").input_ids) == "1+2=3"


def test_cli_trains_once_then_reports_the_cached_checkpoint(tmp_path):
    args = [sys.executable, "-m", "ablate", "warmstart", *SMALL, f"model.cache_dir={tmp_path}"]
    first = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    line = first.stdout.splitlines()[-1]
    assert line.startswith(f"warm start {tmp_path}/warm-") and "held-out Acc" in line
    again = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert again.stdout.strip() == line and "Tokenizing" not in again.stderr
    wrong = subprocess.run([sys.executable, "-m", "ablate", "warmstart", "model=tiny"], capture_output=True,
                           text=True, timeout=60)  # fmt: skip
    assert wrong.returncode == 2 and "not a warm start (use model=tiny_warm or small_warm)" in wrong.stderr


def test_shipped_warm_start_gives_rl_a_policy_with_signal_and_a_length_trade_off(tmp_path):
    """model=tiny_warm as shipped: 30-70% of the completions RL samples (temperature 1) are right,
    greedy decoding more, and longer working is more often right."""
    from hydra.utils import instantiate

    from tests.helpers import compose_train

    cfg = instantiate(compose_train("model=tiny_warm", f"model.cache_dir={tmp_path}").model, _convert_="all")
    path = warm_path(cfg)
    # Shipped, not trained here: its SFT is chaotic enough that installs differ (docs/reproduction.md).
    assert path == SHIPPED / f"warm-{cfg.key()}"
    report = json.loads((path / "warmstart.json").read_text())
    print(json.dumps({k: v for k, v in report.items() if k != "config"}, indent=1))
    sampled = report["sampled_by_style"]
    assert 30 <= sampled["acc"] <= 70 and report["acc"] > sampled["acc"]
    assert sampled["full"]["acc"] > sampled["direct"]["acc"] + 10
    assert sampled["full"]["length"] > 2 * sampled["direct"]["length"]
    assert min(sampled[s]["share"] for s in STYLES) > 5  # RL sees every style (percent of samples)


def shipped_report(model: str) -> tuple[Any, dict[str, Any]]:
    """The warm start ``model=<model>`` names, found shipped in the repository (nothing trained), and
    its report."""
    from hydra.utils import instantiate

    from tests.helpers import compose_train

    cfg = instantiate(compose_train(f"model={model}").model, _convert_="all")
    path = warm_path(cfg)
    assert path == SHIPPED / f"warm-{cfg.key()}"  # used in place from the repository: nothing trained
    return cfg, json.loads((path / "warmstart.json").read_text())


def test_the_shipped_checks_warm_start_has_the_designed_decision():
    """model=checks_warm as shipped: RL starts with a live stopping decision after every answer line,
    stopping is the better bet on easy questions and checking on hard ones (docs/positive_control.md)."""
    cfg, report = shipped_report("checks_warm")
    stops = report["stop_probability"]
    for kind in ("easy", "hard"):
        assert 0.2 < stops[kind]["1"] < 0.5 and 0.35 < stops[kind]["2"] < 0.65 and stops[kind]["3"] > 0.9
    styles = report["sampled_by_style"]["by_difficulty"]
    hard, easy = styles["hard"], styles["easy"]
    assert min(hard["check"]["acc"], hard["check_twice"]["acc"]) > hard["stop"]["acc"] + 30
    going_on = (
        easy["check"]["acc"] * easy["check"]["share"]
        + easy["check_twice"]["acc"] * easy["check_twice"]["share"]
    ) / (easy["check"]["share"] + easy["check_twice"]["share"])
    assert easy["stop"]["acc"] > going_on
    model, tokenizer = load_model(cfg)
    assert (
        model.config.hidden_size == 128 and tokenizer.decode(tokenizer("Answer: 7").input_ids) == "Answer: 7"
    )


def test_the_opposed_warm_start_has_the_decision_study_o_needs():
    """model=checks_opposed_warm as shipped: study O's manipulation check (a) (docs/positive_control.md):
    stopping beats one check by 20 points on easy questions, one check beats stopping by 20 on hard ones."""
    cfg, report = shipped_report("checks_opposed_warm")
    assert cfg.data.check_error == 0.5
    styles = report["sampled_by_style"]["by_difficulty"]
    hard, easy = styles["hard"], styles["easy"]
    assert easy["stop"]["acc"] >= easy["check"]["acc"] + 20
    assert hard["check"]["acc"] >= hard["stop"]["acc"] + 20
    for kind in ("easy", "hard"):
        assert 0.1 < report["stop_probability"][kind]["1"] < 0.9  # a live decision at the first answer


REPO = Path(__file__).resolve().parents[1]
RETRAINED = ("checks_warm", "checks_opposed_warm")
RETRAIN = """
import json, sys
from pathlib import Path
import torch
from hydra.utils import instantiate
from ablate.warmstart import warm_start
from tests.helpers import compose_train
torch.set_num_threads(1)
model, out = sys.argv[1], Path(sys.argv[2])
cfg = instantiate(compose_train(f"model={model}", f"model.cache_dir={out}").model, _convert_="all")
(out / "report.json").write_text(json.dumps(warm_start(cfg, out / "trained")))
"""


@pytest.fixture(scope="module")
def retraining(tmp_path_factory) -> Iterator[dict[str, tuple[subprocess.Popen, Path]]]:
    """Every shipped checks warm start retrained from scratch at once, a process and a thread each
    (the same weights as on 2 threads: the SFT's reductions do not depend on the thread count), with the
    vector kernels they were trained with (torch's AVX-512 ones round otherwise)."""
    runs = {}
    env = {**os.environ, **SHIPPED_KERNELS, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    for model in RETRAINED:
        out = tmp_path_factory.mktemp(model)
        with open(out / "log.txt", "w") as log:  # the process keeps its own handle
            proc = subprocess.Popen([sys.executable, "-c", RETRAIN, model, str(out)], cwd=REPO, env=env,
                                    stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        runs[model] = (proc, out)
    yield runs
    for proc, _ in runs.values():
        proc.kill()  # a test that failed early leaves no training behind
        proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("model", RETRAINED)
def test_the_shipped_checks_warm_start_is_what_the_command_trains(model, retraining):
    """Training the warm start from scratch gives the shipped weights and numbers bit for bit where the
    machine's kernels round as the trainer's did (the same ``ablate.numerics`` fingerprint), and the same
    warm start up to retraining noise elsewhere (about 10 minutes, both models at once)."""
    import torch
    from hydra.utils import instantiate
    from safetensors.torch import load_file

    from tests.helpers import compose_train

    proc, out = retraining[model]
    assert proc.wait(timeout=3600) == 0, (out / "log.txt").read_text()[-3000:]
    cfg = instantiate(compose_train(f"model={model}").model, _convert_="all")
    shipped = SHIPPED / f"warm-{cfg.key()}"
    report, expected = (json.loads((path / name).read_text()) for path, name in
                        ((out, "report.json"), (shipped, "warmstart.json")))  # fmt: skip
    assert sorted(p.name for p in (out / "trained").iterdir()) == sorted(p.name for p in shipped.iterdir())
    if report[NUMERICS] != expected[NUMERICS]:
        print(f"{model}: this machine rounds otherwise ({report[NUMERICS]}, the shipped weights' "
              f"{expected[NUMERICS]}): compared up to retraining noise, not bit for bit")  # fmt: skip
        like_the_shipped(report, expected)
        return
    ours, theirs = load_file(out / "trained" / "model.safetensors"), load_file(shipped / "model.safetensors")
    assert ours.keys() == theirs.keys()
    for name, tensor in ours.items():
        assert torch.equal(tensor, theirs[name]), name
    for key in ("acc", "h_acc", "length", "sft_final_loss", "sampled_by_style", "stop_probability"):
        assert report[key] == expected[key], key


def like_the_shipped(report: dict[str, Any], expected: dict[str, Any]) -> None:
    """The same warm start up to the drift of other rounding: the stopping decision RL starts from, the
    held-out and sampled Acc and the SFT's final loss. Retrained with MKL's other kernels here
    (``MKL_CBWR=COMPATIBLE``) the two moved by at most 0.011 (pi(stop)), 2.0 and 1.4 points (Acc) and
    0.7% (loss); the bounds are two to four times that. (Study O's 20-point manipulation check is a
    property of the shipped checkpoint, tested above, not of every retraining: it passed there by 0.3.)"""
    for kind, lines in expected["stop_probability"].items():
        for line, p_stop in lines.items():
            assert report["stop_probability"][kind][line] == pytest.approx(p_stop, abs=0.03), (kind, line)
    assert report["acc"] == pytest.approx(expected["acc"], abs=5)
    assert report["sampled_by_style"]["acc"] == pytest.approx(expected["sampled_by_style"]["acc"], abs=5)
    assert report["sft_final_loss"] == pytest.approx(expected["sft_final_loss"], rel=0.03)


@pytest.mark.parametrize("model", ["tiny_warm", "checks_warm"])
def test_the_key_does_not_depend_on_how_the_config_was_instantiated(model):
    from hydra.utils import instantiate

    from ablate.config import compose

    node = compose([f"model={model}"]).model
    assert instantiate(node).key() == instantiate(node, _convert_="all").key()
    assert (SHIPPED / f"warm-{instantiate(node).key()}").is_dir()  # the shipped checkpoint, found either way
