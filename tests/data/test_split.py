import pandas as pd
import pytest

from ablate.data.base import split_by_exam
from ablate.data.synthetic import SyntheticExams


def test_no_exam_in_both_splits_and_fraction_close():
    df = SyntheticExams(num_exams=40, seed=3, test_fraction=0.2).load()
    per_exam = df.groupby("exam_id")["split"].nunique()
    assert per_exam.max() == 1
    share = (df["split"] == "test").mean()
    # Whole exams of <= 50 questions each: the test share overshoots by less than one exam.
    assert 0.2 <= share < 0.2 + 50 / len(df)


def test_split_is_deterministic_and_seeded():
    df = SyntheticExams(num_exams=30).read()
    a = split_by_exam(df, 0.2, seed=0)["split"].tolist()
    assert a == split_by_exam(df, 0.2, seed=0)["split"].tolist()
    assert a != split_by_exam(df, 0.2, seed=1)["split"].tolist()


def test_given_split_is_kept_but_must_not_mix_exams():
    df = pd.DataFrame({"exam_id": ["a", "a", "b"], "split": ["train", "train", "test"]})
    assert split_by_exam(df, 0.5, 0)["split"].tolist() == ["train", "train", "test"]
    with pytest.raises(ValueError, match="exam 'a' has questions in both"):
        split_by_exam(df.assign(split=["train", "test", "test"]), 0.5, 0)
    with pytest.raises(ValueError, match="valid choices are train, test"):
        split_by_exam(df.assign(split=["train", "train", "dev"]), 0.5, 0)
