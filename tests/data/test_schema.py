import pytest

from ablate.data import BadRowError, build_table, canonical_row


def row(**kw):
    base = {"prompt": "1+1?", "answer": "2", "score": 3, "total": 150, "exam_id": "e1"}
    base.update(kw)
    return base


def test_value_is_score_over_total():
    assert canonical_row(row(), "f:1")["value"] == pytest.approx(0.02)


def test_given_value_is_kept():
    assert canonical_row(row(value=0.5), "f:1")["value"] == 0.5


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"score": None}, "missing 'score'"),
        ({"score": "abc"}, "'score' is not a number"),
        ({"score": True}, "'score' is not a number"),
        ({"total": 0}, "'total' must be > 0"),
        ({"total": -5}, "'total' must be > 0"),
        ({"score": 151}, "larger than 'total'"),
        ({"score": -1}, "'score' must be >= 0"),
        ({"answer": "  "}, "empty 'answer'"),
        ({"answer": None}, "empty 'answer'"),
        ({"prompt": None}, "missing 'prompt'"),
        ({"exam_id": None}, "missing 'exam_id'"),
        ({"value": 1.5}, "'value' must lie in [0, 1]"),
    ],
)
def test_bad_rows_name_the_place_and_reason(change, reason):
    with pytest.raises(BadRowError) as err:
        canonical_row(row(**change), "exams.jsonl:7")
    assert str(err.value).startswith("exams.jsonl:7: ")
    assert reason in str(err.value)


def test_skip_keeps_valid_rows_and_reports_the_rest():
    records = [("f:1", row(id="a")), ("f:2", row(id="b", score="x")), ("f:3", row(id="c", total=0))]
    df = build_table(records, "f", on_bad_row="skip")
    assert df["id"].tolist() == ["a"]
    report = df.attrs["skip_report"]
    assert [e.where for e in report.skipped] == ["f:2", "f:3"]
    assert "skipped 2 bad row(s)" in str(report)


def test_error_policy_names_every_bad_row_in_one_error():
    records = [("f:1", row(id="a")), ("f:2", row(id="b", score="x"))]
    records += [(f"f:{i}", row(id=str(i), total=0)) for i in range(3, 15)]
    with pytest.raises(BadRowError) as err:
        build_table(records, "f")
    assert err.value.where == "f:2"
    lines = str(err.value).splitlines()
    assert lines[0] == "f: 13 bad row(s); fix them or set data.on_bad_row=skip to leave them out:"
    assert lines[1] == "  f:2: 'score' is not a number: 'x'"
    assert lines[2].startswith("  f:3: ") and lines[10].startswith("  f:11: ")
    assert lines[11:] == ["  ... and 3 more"]


def test_unknown_policy_lists_choices():
    with pytest.raises(ValueError, match="valid choices are error, skip"):
        build_table([("f:1", row())], "f", on_bad_row="ignore")


def test_duplicate_ids_are_refused():
    with pytest.raises(ValueError, match="duplicate question id 'a'"):
        build_table([("f:1", row(id="a")), ("f:2", row(id="a"))], "f")
