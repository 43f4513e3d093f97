"""Answer conventions of real exam answers: sub-questions, full-width forms, hedges, partial credit."""

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ablate.verify import RuleJudge, Verifier
from ablate.verify.extract import halfwidth
from ablate.verify.slots import marked_segments, numbered_items, read_letters, slot_answers
from tests.conftest import REPO

verifier, partial = Verifier(), Verifier(partial=True)

TWO_SLOTS = [
    "（1）【答案】 C <eoa>\n（2）【答案】 A <eoa>",  # GAOKAO-Bench's own format
    "（1）【答案】：Ｃ <eoa> （2）【答案】：Ａ <eoa>",  # full-width, on one line
    "(1)【答案】C\n(2)【答案】A",  # no <eoa>
    "1. 答案：C\n2. 答案：A",
    "Question 1 ... Answer: C\nQuestion 2 ... Answer: (A)",
    "**Answer:**\n1. C\n2. A",  # one mark, numbered answers on their own lines
    "Answer: 58. C 59. A",
    "【答案】 (1) C (2) A <eoa>",
    "【答案】 C A <eoa>",
    "【答案】CA<eoa>",
    "56. C\n57. A",  # no mark: numbered lines of one letter each
    "(1) \\boxed{C} (2) \\boxed{A}",
]


@pytest.mark.parametrize("completion", TWO_SLOTS)
def test_one_answer_per_sub_question_in_order(completion):
    assert verifier(completion, "CA", answer_type="sequence") is True
    assert verifier(completion, "AC", answer_type="sequence") is False  # order matters
    assert partial.score(completion, "AC", answer_type="sequence") == 0.0


@pytest.mark.parametrize(
    ("completion", "reference", "fraction"),
    [
        (
            "（1）【答案】 C <eoa>\n（2）【答案】 B <eoa>\n（3）【答案】 D <eoa>",
            "CAD",
            2 / 3,
        ),  # one slot wrong
        ("（1）【答案】 C <eoa>\n（2）【答案】 A <eoa>\n（3）【答案】 D <eoa>", "CAD", 1.0),
        ("（1）【答案】 B，D <eoa>\n（2）【答案】 A <eoa>", "BA", 0.5),  # a hedge in a slot earns nothing
        ("（1）【答案】 C <eoa>", "CA", 0.5),  # an unanswered slot
        ("【答案】 1. C 2. B 3. D 4. A", "CBDB", 0.75),
        ("Answer: CDCB", "CDBC", 0.5),  # repeated letters: one letter per blank, in order
        ("no letters here", "CA", 0.0),
    ],
)
def test_slots_score_by_hand(completion, reference, fraction):
    assert partial.score(completion, reference, answer_type="sequence") == fraction
    assert verifier.score(completion, reference, answer_type="sequence") == float(fraction == 1.0)
    assert verifier(completion, reference, answer_type="sequence") is (fraction == 1.0)
    assert partial(completion, reference, answer_type="sequence") is (fraction == 1.0)  # bool: all right


HEDGES = [
    "【答案】B，D <eoa>",
    "【答案】B、D <eoa>",
    "【答案】B和D <eoa>",
    "【答案】B或D <eoa>",
    "【答案】B及D <eoa>",
    "【答案】B以及D <eoa>",
    "【答案】B与D <eoa>",
    "【答案】：Ｂ，Ｄ <eoa>",
    "答案：B；D",
    "Answer: B, D",
    "Answer: B and D",
    "Answer: B or D",
    "Answer: B/D",
    "Answer: A, B, C, D",
    "The answer is B and D.",
    "\\boxed{B, D}",
    "【答案】A. ①② B. ①③ C. ②④ D. ③④ <eoa>",  # every option copied out
]


@pytest.mark.parametrize("completion", HEDGES)
@pytest.mark.parametrize("reference", ["B", "D"])
def test_a_hedge_on_a_single_answer_earns_nothing(completion, reference):
    assert verifier(completion, reference) is False
    assert partial.score(completion, reference) == 0.0


@pytest.mark.parametrize(
    "completion",
    [
        "【答案】B <eoa>",
        "【答案】：Ｂ <eoa>",
        "【答案】: B. 因为……",
        "答案：B",
        "故选B。",
        "Answer: (B) the garden",
        "Final answer: B. A wheelchair user needs help.",  # the letter that opens the answer decides
        "\\boxed{B}",
        "The answer is B.",
    ],
)
def test_single_answers_in_each_convention(completion):
    assert verifier(completion, "B") is True
    assert verifier(completion, "D") is False


@pytest.mark.parametrize(
    ("completion", "credit"),
    [
        ("【答案】 B、C <eoa>", 1.0),
        ("【答案】 C B", 1.0),
        ("【答案】 B <eoa>", 0.5),
        ("【答案】 BCD", 0.0),
        ("【答案】 A", 0.0),
    ],
)
def test_multi_select_half_credit_for_a_right_subset(completion, credit):
    # GAOKAO-Bench's Physics rule: all right 6 points, a right non-empty subset 3, any wrong letter 0.
    assert partial.score(completion, "BC") == credit
    assert verifier.score(completion, "BC") == float(credit == 1.0)


def test_a_list_reference_is_slots_each_of_its_own_kind():
    two = "（1）【答案】 $\\frac{1}{2}$ <eoa>\n（2）【答案】 Paris <eoa>"
    assert verifier(two, ["0.5", "paris"]) is True
    assert partial.score(two, ["0.5", "London"]) == 0.5
    assert verifier(two, ["0.5", "London"]) is False


def test_math_reads_marks_and_full_width():
    assert verifier("【解析】…<eoe>\n【答案】$\\frac{1}{2}$<eoa>", "\\frac{1}{2}", answer_type="math") is True
    assert verifier("【答案】 $(-1，3)$ <eoa>", "(-1,3)", answer_type="math") is True  # full-width comma
    assert verifier("答案：2", "3", answer_type="math") is False
    assert verifier("so $x=\\frac{1+\\sqrt{5}}{2}$ holds", "2", answer_type="math") is False  # no last-digit
    assert verifier.extract_answer("【答案】 $7$ <eoa>", "7") == "7"


def test_reading_helpers():
    assert halfwidth("ＡＢ（１）：，") == "AB(1):,"
    assert marked_segments("（1）【答案】 C <eoa> （2）【答案】: A") == ["C", "A"]
    assert marked_segments("\\boxed{1} then \\boxed{2}") == ["1", "2"]
    assert marked_segments("\\boxed{1}", sources=["answer_line"]) == []
    assert numbered_items("36. C 37. D 38. B 2.5 is not one") == [
        (36, "C"),
        (37, "D"),
        (38, "B 2.5 is not one"),
    ]
    assert slot_answers("Answer: C", 2) == ["C", None]
    assert slot_answers(
        "（1）【答案】 B <eoa>（2）【答案】 C <eoa>（1）【答案】 A <eoa>（2）【答案】 D <eoa>", 2
    ) == ["A", "D"]
    assert slot_answers("nothing", 2) is None
    assert [read_letters(a) for a in ("B，D", "A和D", "b", "C. the garden", "It is B or D")] == [
        "BD",
        "AD",
        "B",
        "C",
        "BD",
    ]


def test_settings_and_batch_scores():
    with pytest.raises(ValueError, match=r"verifier\.partial='yes': valid choices are true, false"):
        Verifier(partial="yes")
    cfg = OmegaConf.load(REPO / "conf/verifier/default.yaml")
    assert cfg.partial is False
    cfg.partial = True
    built = instantiate(cfg)
    assert built.partial is True and built.score("Answer: A", "AC") == 0.5
    completions, refs = ["Answer: A", "Answer: AC", "Answer: B"], ["AC", "AC", "AC"]
    assert built.score_many(completions, refs) == [0.5, 1.0, 0.0]
    assert verifier.score_many(completions, refs) == [0.0, 1.0, 0.0]
    judged = Verifier(judge=RuleJudge(mode="exact"), partial=True)
    assert (
        judged.score("Answer: A", "A") == 1.0 and judged.score("Answer: A", "AC") == 0.0
    )  # a verdict: 0 or 1
