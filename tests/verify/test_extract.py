import pytest

from ablate.verify.extract import EXTRACTORS, check_order, completion_text, extract

boxed, answer_line = EXTRACTORS["boxed"], EXTRACTORS["answer_line"]
last_number, last_letter = EXTRACTORS["last_number"], EXTRACTORS["last_letter"]


def test_boxed_takes_the_last_and_keeps_nested_braces():
    assert boxed("first \\boxed{1} then \\boxed{\\frac{1}{2}} done") == "\\frac{1}{2}"
    assert boxed("\\fbox{x^{2}}") == "x^{2}"
    assert boxed("\\boxed{unclosed") is None
    assert boxed("no box here") is None


def test_answer_line():
    assert answer_line("work\nAnswer: 42\n") == "42"
    assert answer_line("Answer: 1\nFinal answer: $\\frac{3}{4}$.") == "\\frac{3}{4}"
    assert answer_line("故答案：12。") == "12"
    assert answer_line("answer is: B") == "B"
    assert answer_line("Answer:   \n") is None
    assert answer_line("no answer line") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12+30=42", "42"),
        ("it is -7 degrees", "-7"),
        ("pi is about 3.14", "3.14"),
        ("the ratio 3/4 holds", "3/4"),
        ("we sold 1,234,567 units", "1234567"),
        ("none at all", None),
    ],
)
def test_last_number(text, expected):
    assert last_number(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("the answer is B", "B"),
        ("I pick (C).", "C"),
        ("选 D", "D"),
        ("A, C", "AC"),
        ("options A and C are right", "AC"),
        ("Add the numbers", None),  # the A of "Add" is inside a word
        ("BAD idea", None),
    ],
)
def test_last_letter(text, expected):
    assert last_letter(text) == expected


def test_extract_order_and_fallback():
    text = "so \\boxed{5}\nAnswer: 6\n7"
    assert extract(text, ["boxed", "answer_line"]) == "5"
    assert extract(text, ["answer_line", "boxed"]) == "6"
    assert extract("just 7", ["boxed", "answer_line", "last_number"]) == "7"
    assert extract("nothing", ["boxed"]) is None


def test_unknown_strategy_lists_the_choices():
    with pytest.raises(
        ValueError, match="valid choices are auto or a list of boxed, answer_line, last_number"
    ):
        check_order(["boxd"])


def test_completion_forms():
    assert completion_text("plain") == "plain"
    assert completion_text([{"role": "assistant", "content": "chat"}]) == "chat"
    assert completion_text(None) == ""
