import numpy as np

from ablate.data.synthetic import DIFFICULTY, SyntheticExams, integer_points, worked_solution


def test_deterministic_by_seed():
    a, b = SyntheticExams(num_exams=5, seed=7).read(), SyntheticExams(num_exams=5, seed=7).read()
    assert a.equals(b)
    assert not a["prompt"].equals(SyntheticExams(num_exams=5, seed=8).read()["prompt"])


def test_exam_points_sum_to_total():
    df = SyntheticExams().read()
    sums = df.groupby("exam_id").agg(points=("score", "sum"), total=("total", "first"))
    assert (sums["points"] == sums["total"]).all()
    assert np.allclose(df.groupby("exam_id")["value"].sum(), 1.0)


def test_value_distribution_is_skewed_like_the_paper():
    df = SyntheticExams().read()
    assert 0.02 <= df["value"].mean() <= 0.05
    assert 0.01 <= (df["value"] > 0.1).mean() <= 0.05
    assert df["value"].median() < df["value"].mean()


def test_answers_are_correct_sums_and_harder_questions_worth_more():
    df = SyntheticExams(num_exams=20).read()
    for prompt, answer in zip(df["prompt"], df["answer"], strict=True):
        terms = prompt.split("\n")[0].removeprefix("Add: ").split(" + ")
        assert sum(map(int, terms)) == int(answer)
    by_level = df.groupby("difficulty")["value"].mean()
    assert by_level["phd"] > by_level["primary"]
    assert set(df["difficulty"]) <= set(DIFFICULTY.values())


def test_predicted_scores_correlate_like_the_papers_predictor():
    df = SyntheticExams().read()
    r = np.corrcoef(df["score"], df["predicted_score"])[0, 1]
    assert 0.87 <= r <= 0.95


def test_integer_points_and_worked_solution():
    points = integer_points(np.array([1.0, 1.0, 2.0]), 10)
    assert points.sum() == 10 and points.min() >= 1
    assert points.tolist() == [3, 3, 4]
    assert worked_solution([3, 4, 5]) == "3+4=7\n7+5=12\nAnswer: 12"
