import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ablate.data import BadRowError
from ablate.data.table import TableExams
from tests.conftest import FIXTURES, REPO

RLEV = {"prompt": "query", "answer": "label"}


def test_rlev_release_format_json_and_jsonl():
    df = TableExams(
        path=str(FIXTURES / "rlev/train.json"), test_path=str(FIXTURES / "rlev/test.jsonl"), fields=RLEV
    ).load()
    assert df["answer"].tolist() == ["4", "9", "B", "7", "0.5"]
    assert df["value"].tolist() == pytest.approx([3 / 150, 30 / 150, 6 / 100, 5 / 100, 2 / 100])
    assert df["split"].tolist() == ["train", "train", "train", "test", "test"]
    # Chat-formatted strings are kept as they are.
    assert df["prompt"][1].startswith("<|im_start|>user")
    # JSONL rows are named by line (the blank line 2 is skipped), JSON items by index.
    assert df["id"].tolist()[3:] == [f"{FIXTURES}/rlev/test.jsonl:1", f"{FIXTURES}/rlev/test.jsonl:3"]
    assert df["id"][0].endswith("train.json:item 0")


def test_chat_message_prompts_are_kept_and_formats_not_mixed():
    df = TableExams(path=str(FIXTURES / "rlev/chat.jsonl"), fields=RLEV).read()
    assert df["prompt"][0] == [{"role": "user", "content": "Which is prime? A. 4 B. 5 C. 6"}]
    mixed = r"mixed\.jsonl:2: prompt is chat messages but earlier prompts are text"
    with pytest.raises(ValueError, match=mixed):
        TableExams(path=str(FIXTURES / "rlev/mixed.jsonl"), fields=RLEV).read()


def test_conf_rlev_json_instantiates():
    cfg = OmegaConf.load(REPO / "conf/data/rlev_json.yaml")
    cfg.path = str(FIXTURES / "rlev/train.json")
    df = instantiate(cfg).load()
    assert len(df) == 3 and df["exam_id"].nunique() == 3


def test_bad_rows_error_names_file_and_line():
    loader = TableExams(path=str(FIXTURES / "rlev/bad_rows.jsonl"), fields=RLEV)
    with pytest.raises(BadRowError, match=r"bad_rows.jsonl:2: missing 'score'"):
        loader.read()


def test_bad_rows_skip_reports_every_one():
    df = TableExams(path=str(FIXTURES / "rlev/bad_rows.jsonl"), fields=RLEV, on_bad_row="skip").read()
    assert df["prompt"].tolist() == ["ok row", "another ok row"]
    skipped = df.attrs["skip_report"].skipped
    assert [e.where.rsplit(":", 1)[1] for e in skipped] == ["2", "3", "4", "5", "6", "7", "8"]
    reasons = [e.reason for e in skipped]
    assert reasons[0] == "missing 'score'"
    assert reasons[1].startswith("'score' is not a number")
    assert reasons[2].startswith("'total' must be > 0")
    assert "larger than 'total'" in reasons[3]
    assert reasons[4] == "empty 'answer'"
    assert reasons[5] == "missing 'prompt'"
    assert reasons[6].startswith("invalid JSON")


def test_custom_jsonl_with_field_mapping_and_fixed_total():
    df = TableExams(
        path=str(FIXTURES / "custom.jsonl"),
        fields={
            "prompt": "question",
            "answer": "solution",
            "score": "points",
            "exam_id": "paper",
            "difficulty": "level",
        },
        total=20,
        test_fraction=0.3,
    ).load()
    assert df["value"].tolist() == pytest.approx([0.2, 0.3, 0.5])
    assert df["difficulty"].tolist() == ["junior", "senior", "primary"]
    assert df.groupby("exam_id")["split"].nunique().max() == 1
    assert set(df["split"]) == {"train", "test"}


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match=r"data\.fields has unknown canonical name"):
        TableExams(path="x", fields={"promt": "q"})
    with pytest.raises(FileNotFoundError, match=r"data\.path=nope\.jsonl"):
        TableExams(path="nope.jsonl").read()
    with pytest.raises(ValueError, match=r"data\.on_bad_row='drop': valid choices are error, skip"):
        TableExams(path="x", on_bad_row="drop")
