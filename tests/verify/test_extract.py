import pytest

from ablate.verify import AUTO_ORDER, EXTRACTORS, completion_text
from ablate.verify.extract import all_letters, extract, is_letter_answer, resolve_order

boxed, answer_line = EXTRACTORS["boxed"], EXTRACTORS["answer_line"]
last_number, last_letter = EXTRACTORS["last_number"], EXTRACTORS["last_letter"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("first \\boxed{1} then \\boxed{\\frac{1}{2}} done", "\\frac{1}{2}"),  # several: the last
        ("\\boxed{\\{1, \\{2\\}\\}}", "\\{1, \\{2\\}\\}"),
        ("\\boxed{x^{2^{3}}} and more", "x^{2^{3}}"),  # nested braces
        ("\\fbox{42}", "42"),
        ("\\boxed {7}", "7"),
        ("\\boxed{5} then \\boxed{unclosed", "5"),  # an unfinished last box: the last complete one
        ("\\boxed{unclosed", None),
        ("\\boxed{}", None),
        ("no box here", None),
    ],
)
def test_boxed(text, expected):
    assert boxed(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("work\nAnswer: 42\n", "42"),
        ("Answer: 1\nFinal answer: $\\frac{3}{4}$.", "\\frac{3}{4}"),  # the last; $ and period dropped
        ("final answer: x = 3 \nthanks", "x = 3"),  # up to the end of the line
        ("**Answer:** 12", "12"),
        ("**Final Answer**: 12", "12"),
        ("**Final Answer:**\n\n$$12$$", "12"),  # an empty marker line: the next line
        ("The answer is: B", "B"),
        ("故答案：12。", "12"),
        ("答案: 7", "7"),
        ("【答案】C <eoa>", "C <eoa>"),
        ("$5$ or $6$\nAnswer: $5$ or $6$", "$5$ or $6$"),  # two spans stay as they are
        ("Answer:   \n", None),
        ("the answer is 42", None),  # no colon: not an answer line
        ("the answers: 1, 2", None),
        ("no answer line", None),
    ],
)
def test_answer_line(text, expected):
    assert answer_line(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12+30=42", "42"),
        ("it is -7 degrees", "-7"),
        ("it is −7 degrees", "-7"),  # unicode minus
        ("5-3 = 2, so 5-3", "3"),  # subtraction, not a negative number
        ("pi is about 3.14.", "3.14"),
        ("the ratio 3/4 holds", "3/4"),
        ("so $\\frac{3}{4}$", "3/4"),
        ("we sold 1,234,567 units", "1234567"),
        ("the list 1,2,3", "3"),  # commas between small numbers are not thousands separators
        ("none at all", None),
        ("", None),
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
        ("故选D。", "D"),
        ("A, C", "AC"),
        ("options A and C are right", "AC"),
        ("(A) and (C)", "AC"),
        ("not B; it is A、C", "AC"),
        ("Add the numbers", None),  # the A of "Add" is inside a word
        ("BAD idea", None),
        ("I choose H", None),
        ("", None),
    ],
)
def test_last_letter(text, expected):
    assert last_letter(text) == expected


def test_all_letters_reads_one_letter_per_blank():
    assert all_letters("36. C 37. D 38. B") == "CDB"
    assert all_letters("Because of this, nothing") == ""


@pytest.mark.parametrize(
    ("reference", "expected"),
    [("C", True), ("AC", True), ("A, C", True), ("(B)", True), ("H", False), ("c", False), ("Cat", False)],
)
def test_is_letter_answer(reference, expected):
    assert is_letter_answer(reference) is expected


def test_extract_order_and_fallback():
    text = "so \\boxed{5}\nAnswer: 6\n7"
    assert AUTO_ORDER == ("boxed", "answer_line", "last_number")
    assert extract(text) == "5"
    assert extract(text, ["answer_line", "boxed"]) == "6"
    assert extract(text, "last_number") == "7"
    assert extract("just 7", "auto") == "7"
    assert extract("nothing", ["boxed"]) is None
    assert extract([{"role": "assistant", "content": "Answer: 9"}]) == "9"


def test_letter_references_read_letters_not_numbers():
    text = "Option 3 is (B)."
    assert extract(text) == "3"
    assert extract(text, reference="B") == "B"
    assert extract(text, ["boxed", "last_number"], letters=True) == "B"
    assert extract(text, reference="B", letters=False) == "3"


@pytest.mark.parametrize("bad", ["boxd", ["boxed", "first_number"], []])
def test_unknown_strategy_lists_the_choices(bad):
    with pytest.raises(
        ValueError, match="valid choices are auto, boxed, answer_line, last_number, last_letter or a list"
    ):
        resolve_order(bad)


def test_completion_forms():
    assert completion_text("plain") == "plain"
    assert completion_text([{"role": "assistant", "content": "chat"}]) == "chat"
    assert completion_text([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]) == "a"
    assert completion_text({"role": "assistant", "content": "one"}) == "one"
    assert completion_text([{"role": "assistant", "content": None}]) == ""
    assert completion_text([]) == ""
    assert completion_text(None) == ""
