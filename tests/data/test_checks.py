"""The checks task: printed points, a stopping decision, value independent of difficulty."""

import re

import numpy as np
import pytest

from ablate.data.checks import STYLES, ValuedChecks, check_pass, solution
from ablate.data.synthetic import prompt_terms


def test_points_are_printed_and_values_sum_to_one_per_exam():
    df = ValuedChecks(num_exams=10).read()
    assert np.allclose(df.groupby("exam_id")["value"].sum(), 1.0)
    printed = df["prompt"].str.extract(r"\((\d+) points?\)\n$", expand=False).astype(int)
    assert (printed == df["score"]).all() and (df["shown_value"] == df["value"]).all()
    for prompt, answer in zip(df["prompt"], df["answer"], strict=True):
        assert sum(prompt_terms(prompt)) == int(answer)


def test_value_follows_the_paper_and_is_independent_of_difficulty_by_default():
    df = ValuedChecks(num_exams=200).read()
    assert 0.018 <= df["value"].mean() <= 0.022 and 0.008 <= (df["value"] > 0.1).mean() <= 0.016
    hard = (df["difficulty"] == "hard").to_numpy()
    assert abs(hard.mean() - 0.5) < 0.02
    assert abs(np.corrcoef(np.log(df["score"]), hard)[0, 1]) < 0.05
    related = ValuedChecks(num_exams=200, value_difficulty_correlation=0.6).read()
    assert np.corrcoef(np.log(related["score"]), related["difficulty"] == "hard")[0, 1] > 0.3


def test_kinds_set_the_numbers_added():
    df = ValuedChecks(num_exams=5).read()
    for prompt, kind in zip(df["prompt"], df["difficulty"], strict=True):
        terms = prompt_terms(prompt)
        assert len(terms) == (2 if kind == "easy" else 4) and all(1 <= t <= 9 for t in terms)


def test_hidden_and_shuffled_points():
    hidden = ValuedChecks(num_exams=5, points="hidden").read()
    assert not hidden["prompt"].str.contains("point").any()
    shown = ValuedChecks(num_exams=5).read()
    shuffled = ValuedChecks(num_exams=5, points="shuffled").read()
    assert (shuffled["value"] == shown["value"]).all()  # the true value is kept for H-Acc
    printed = shuffled["prompt"].str.extract(r"\((\d+) points?\)", expand=False).astype(int)
    assert (printed == shuffled["shown_score"]).all()
    for _, exam in shuffled.groupby("exam_id"):
        assert sorted(exam["shown_score"]) == sorted(exam["score"])  # permuted within the exam
    assert (shuffled["shown_score"] != shuffled["score"]).mean() > 0.3
    with pytest.raises(ValueError, match="valid choices are shown, hidden, shuffled"):
        ValuedChecks(points="maybe")


def test_solutions_stop_or_check_and_checks_revise_the_first_answer():
    assert solution([3, 8, 5, 9], 0) == "Answer: 25"
    assert check_pass([3, 8, 5, 9]) == "Check: 3+8=11\n11+5=16\n16+9=25\nAnswer: 25"
    assert check_pass([3, 5], slip=2) == "Check: 3+5=10\nAnswer: 10"
    assert solution([3, 8, 5, 9], 2, first=24).splitlines()[::4] == ["Answer: 24", "Answer: 25", "Answer: 25"]
    assert solution([3, 5], 2) == "Answer: 8\nCheck: 3+5=8\nAnswer: 8\nCheck: 5+3=8\nAnswer: 8"
    data = ValuedChecks(num_exams=60)
    df = data.read()
    for kind, style in [(k, s) for k in ("easy", "hard") for s in ("stop", "check", "check_twice")]:
        part = df[df["difficulty"] == kind]
        texts = [data.styled_solution(p, style) for p in part["prompt"]]
        assert {t.count("Check:") for t in texts} == {STYLES[style]} and {
            data.written_style(t) for t in texts
        } == {style}
        answer = part["answer"].astype(int).to_numpy()
        first = np.array([int(re.match(r"Answer: (\d+)", t).group(1)) for t in texts]) != answer
        final = np.array([int(t.rsplit("Answer: ", 1)[1]) for t in texts]) != answer
        if kind == "hard":  # a guess, checked or not; a check works it out
            assert abs(first.mean() - data.first_error) < 0.05
            assert final.mean() == (first.mean() if style == "stop" else 0)
        else:  # recalled; a check can only slip
            assert first.mean() == 0
            assert final.mean() == 0 if style == "stop" else abs(final.mean() - data.check_error) < 0.05


def test_stop_text_has_three_answer_lines():
    df = ValuedChecks(num_exams=2).read()
    assert (df["stop_text"].str.count("Answer:") == 3).all()
    assert (df["stop_text"].str.len() <= 96).all()  # within the positive control's generation cap
