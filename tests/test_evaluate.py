import functools
import json
import subprocess
import sys

import pandas as pd
import pytest
from hydra.utils import instantiate

from ablate.evaluate import evaluate_file, main, predict, write_predictions
from ablate.generation import generate_ids
from ablate.models import load_model
from tests.conftest import FIXTURES
from tests.helpers import FAST, compose_train
from tests.test_metrics import FIVE
from tests.verify.judge_server import JudgeServer

GAOKAO_FIXTURE = FIXTURES / "gaokao"


def test_cli_prints_and_returns_the_metrics(tmp_path, capsys):
    path = write_predictions(FIVE, tmp_path / "predictions.jsonl")
    summary = main(["--predictions", str(path)])
    assert summary["h_acc"] == pytest.approx(82.5)
    out = capsys.readouterr().out
    assert "H-Acc 82.5" in out and "value density 2.750" in out and "length by value bucket" in out
    assert "length gap top-bottom 20% +30.0" in out


def test_an_evaluation_is_logged_as_eval_metrics_without_the_row_count():
    from ablate import metrics
    from ablate.evaluate import eval_metrics

    summary = metrics.summary(FIVE)
    logged = eval_metrics(summary, metrics.length_by_value_bucket(FIVE, buckets=5))
    buckets = {f"eval/length_bucket{i}" for i in range(5)}
    assert logged["eval/h_acc"] == pytest.approx(82.5) and "eval/n" not in logged
    assert set(logged) == buckets | {f"eval/{k}" for k in summary if k != "n"}


def test_csv_and_json_output(tmp_path, capsys):
    FIVE.to_csv(tmp_path / "p.csv", index=False)
    assert evaluate_file(tmp_path / "p.csv")["value_density"] == pytest.approx(2.75)
    main(["--predictions", str(tmp_path / "p.csv"), "--json"])
    assert json.loads(capsys.readouterr().out)["acc"] == pytest.approx(60.0)


def test_console_script_end_to_end(tmp_path):
    path = write_predictions(FIVE, tmp_path / "predictions.jsonl")
    done = subprocess.run(
        [sys.executable, "-m", "ablate", "evaluate", "--predictions", str(path), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout)["h_acc"] == pytest.approx(82.5)


def test_bad_file_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"value": 0.1, "correct": true, "length": 3}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: invalid JSON"):
        evaluate_file(bad)
    with pytest.raises(FileNotFoundError, match="--predictions"):
        evaluate_file(tmp_path / "missing.jsonl")


def judged_table() -> pd.DataFrame:
    # A (the saved correct): right, right, wrong, wrong; the judge (last word = reference): right, wrong,
    # right, wrong.
    return pd.DataFrame(
        {
            "id": ["q1", "q2", "q3", "q4"],
            "exam_id": ["e"] * 4,
            "value": [0.1, 0.2, 0.3, 0.4],
            "answer": ["42", "42", "7", "5"],
            "completion": ["so it is 42", "so it is 41", "so it is 7", "no idea"],
            "correct": [True, True, False, False],
            "length": [10, 20, 30, 40],
            "prompt": ["What is 6*7?", "What is 6*7?", "What is 3+4?", "What is 2+3?"],
        }
    )


def test_rejudge_with_the_llm_judge_prints_the_agreement_table(tmp_path, capsys):
    path = write_predictions(judged_table(), tmp_path / "predictions.jsonl")
    out = tmp_path / "rejudged.jsonl"
    with JudgeServer() as server:
        overrides = [
            "verifier=llm_judge",
            f"verifier.judge.base_url={server.url}",
            "verifier.judge.model=rule-judge",
        ]
        result = main(["--predictions", str(path), "--rejudge", *overrides, "--output", str(out)])
        questions = [b["messages"][0]["content"].split("\n\n")[1] for b in server.chats()]
    assert result["agreement"] == {
        "both_right": 1, "both_wrong": 1, "only_a": 1, "only_b": 1, "n": 4, "agreement": 50.0
    }  # fmt: skip
    assert result["a"]["h_acc"] == pytest.approx(30.0) and result["b"]["h_acc"] == pytest.approx(40.0)
    assert (
        sorted(questions)
        == ["Question:\nWhat is 2+3?", "Question:\nWhat is 3+4?"] + ["Question:\nWhat is 6*7?"] * 2
    )
    printed = capsys.readouterr().out
    assert "  A right          1        1\n  A wrong          1        1\n" in printed
    assert "both right 1, both wrong 1, only A 1, only B 1: 50.0% of 4 agree" in printed
    assert (
        "A (as saved):  n=4  Acc 50.0  H-Acc 30.0" in printed
        and "B (rejudged):  n=4  Acc 50.0  H-Acc 40.0" in printed
    )
    assert pd.read_json(out, lines=True)["correct"].tolist() == [True, False, True, False]


def test_rejudge_joins_questions_from_a_data_config(tmp_path, capsys):
    two = "（1）【答案】 A <eoa>\n（2）【答案】 B <eoa>"  # the second of two slots wrong
    table = pd.DataFrame(
        {
            "id": ["2010-2022_Math_I_MCQs:0", "2010-2022_Math_I_MCQs:5"],
            "exam_id": ["e", "e"],
            "value": [0.25, 0.75],
            "answer": ["D", "AC"],
            "completion": ["【答案】：Ｄ <eoa>", two],
            "correct": [False, True],
            "length": [5, 9],
        }
    )
    path = write_predictions(table, tmp_path / "p.jsonl")
    data = ["data=gaokao", f"data.path={GAOKAO_FIXTURE}", "data.on_bad_row=skip", "data.total=present"]
    result = main(
        ["--predictions", str(path), "--rejudge", "verifier=default", "verifier.partial=true", *data]
    )
    assert result["agreement"] == {
        "both_right": 0, "both_wrong": 0, "only_a": 1, "only_b": 1, "n": 2, "agreement": 0.0
    }  # fmt: skip
    assert result["b"]["h_acc"] == pytest.approx(100 * (0.25 + 0.75 * 0.5))  # half the slots of the 2nd
    assert result["b"]["acc"] == pytest.approx(100 * (1 + 0.5) / 2)  # the mean credit
    printed = capsys.readouterr().out
    assert "H-Acc 62.5" in printed and "partial credit: Acc is the mean credit" in printed
    # Without the data config the answer types are unknown: "AC" then reads as a two-letter choice.
    plain = main(
        ["--predictions", str(path), "--rejudge", "verifier=default", "verifier.partial=true", "--json"]
    )
    assert plain["b"]["h_acc"] == pytest.approx(25.0)


def test_rejudge_bad_input_names_what_to_fix(tmp_path):
    path = write_predictions(judged_table().drop(columns=["completion"]), tmp_path / "p.jsonl")
    with pytest.raises(
        ValueError, match=r"p\.jsonl: --rejudge needs columns \['completion', 'answer'\]; missing"
    ):
        main(["--predictions", str(path), "--rejudge", "verifier=default"])
    path = write_predictions(judged_table(), tmp_path / "p.jsonl")
    with pytest.raises(
        ValueError,
        match=r"(?s)--rejudge verifier=nope: .*options in 'verifier':\n\tboxed\n\tdefault\n\tllm_judge",
    ):
        main(["--predictions", str(path), "--rejudge", "verifier=nope"])
    data = ["data=gaokao", f"data.path={GAOKAO_FIXTURE}", "data.on_bad_row=skip"]
    with pytest.raises(
        ValueError, match=r"p\.jsonl: 4 ids not in the data config's questions, e\.g\. \['q1'"
    ):
        main(["--predictions", str(path), "--rejudge", "verifier=default", *data])


def test_another_generator_answers_every_question_in_one_call_and_gives_the_same_table():
    cfg = compose_train(*FAST, "eval_limit=null")
    questions = instantiate(cfg.data).load().query("split == 'test'").head(20)
    model, tokenizer = load_model(instantiate(cfg.model))
    verifier = instantiate(cfg.verifier)
    calls = []

    def engine(prompts, max_new_tokens, stops, pad_id, sample):  # the same decoder, 4 prompts a batch
        calls.append([len(p) for p in prompts])
        step = functools.partial(
            generate_ids, model, max_new_tokens=max_new_tokens, stops=stops, pad_id=pad_id
        )
        return [ids for i in range(0, len(prompts), 4) for ids in step(prompts[i : i + 4], sample=sample)]

    default = predict(model, tokenizer, questions, verifier, 12, batch_size=4)
    engined = predict(model, tokenizer, questions, verifier, 12, batch_size=4, generate=engine)
    assert len(calls) == 1 and len(calls[0]) == 20 and calls[0] == sorted(calls[0])  # once, shortest first
    pd.testing.assert_frame_equal(engined, default)
    assert default["length"].sum() > 0
