import pickle
import threading
import time

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ablate.verify import MODES, Judge, ReferenceInCompletion, RuleJudge, Verifier
from tests.conftest import REPO

verifier = Verifier()


@pytest.mark.parametrize(
    ("completion", "reference", "expected"),
    [
        ("Answer: CA", "AC", True),  # multi-choice is order-insensitive
        ("Answer: A, C", "AC", True),
        ("Answer: c", "C", True),  # and case-insensitive
        ("Answer: ACA", "AC", True),  # repeats ignored
        ("Answer: AB", "AC", False),
        ("Answer: A", "AC", False),  # a subset is wrong
        ("Answer: ABCD", "AC", False),  # so is a superset
        ("I choose (B).", "B", True),
        ("I choose (B).", "D", False),
        ("\\boxed{\\text{(B)}}", "B", True),
        ("Answer: The answer is C", "C", True),  # words on the answer line are not choice letters
        ("Answer: C because of the derivation", "C", True),
        ("Answer: bad", "ABD", False),
        ("Answer: A and D", "A, D", True),
        ("【答案】C <eoa>", "C", True),
        ("所以选 D", "D", True),
        ("no letter at all", "A", False),
    ],
)
def test_choice(completion, reference, expected):
    assert verifier(completion, reference) is expected


@pytest.mark.parametrize(
    ("completion", "reference", "expected"),
    [
        ("Answer: CDBC", "CDBC", True),
        ("Answer: 36. C 37. D 38. B 39. C", "CDBC", True),
        ("Answer: CDCB", "CDBC", False),  # one letter per blank: order matters
        ("Answer: ABCD", "CDBC", False),  # a repeated letter in the reference means blanks, not a set
    ],
)
def test_letter_sequences(completion, reference, expected):
    assert verifier(completion, reference) is expected


def test_sequence_answer_type_keeps_order():
    assert verifier("Answer: B C A", "BCA", answer_type="sequence")
    assert not verifier("Answer: A B C", "BCA", answer_type="sequence")
    assert verifier("Answer: A B C", "BCA", answer_type="choice")


@pytest.mark.parametrize(
    ("completion", "reference", "expected"),
    [
        ("\\boxed{\\frac{1}{2}}", "0.5", True),
        ("Answer: 0.5", "\\frac{1}{2}", True),
        ("Answer: 1/2", "\\frac{1}{2}", True),
        ("Answer: 2.0", "2", True),
        ("Answer: 2", "3", False),
        ("\\boxed{(x+1)^2}", "x^2+2x+1", True),
        ("\\boxed{(x+1)^2}", "x^2+1", False),
        ("\\boxed{x = 3}", "3", True),
        ("\\boxed{\\{2, 1\\}}", "\\{1, 2\\}", True),
        ("Answer: 1,234", "1234", True),
        ("\\boxed{2 or 3}", "2", False),  # hedging is wrong
        ("12+30=42\nAnswer: 42", "42", True),
        ("12+30=42\nAnswer: 43", "42", False),
        ("12+30=42", "42", True),  # no box, no answer line: the last number
        ("first \\boxed{41}, no: \\boxed{42}", "42", True),
    ],
)
def test_math(completion, reference, expected):
    assert verifier(completion, reference) is expected


def test_exact_mode_normalises_case_space_dollars_and_period():
    exact = Verifier(mode="exact")
    assert exact("Answer: $Hello   World$.", "hello world") is True
    assert exact("Answer: hello", "hello world") is False
    assert exact("Answer: 0.5", "1/2") is False  # no maths in exact mode


def test_auto_mode_dispatch():
    assert [verifier.kind(r) for r in ("AC", "A, C", "\\frac{1}{2}", "x^2+1", "Paris", "分层抽样")] == [
        "choice",
        "choice",
        "math",
        "math",
        "exact",
        "exact",
    ]
    assert verifier.kind("}}{{") == "exact"  # math-verify gives back only the string: no maths
    assert verifier.kind("B", answer_type="exact") == "exact"  # the row's answer_type wins
    assert verifier.kind("B", answer_type="free text") == "choice"  # an unknown one is ignored
    assert Verifier(mode="math").kind("B", answer_type="exact") == "math"  # and a fixed mode wins over it
    assert verifier("Answer: b", "B", answer_type="exact")
    assert not verifier("Answer: B C", "BC", answer_type="exact")


def test_words_are_compared_as_text_not_as_products_of_symbols():
    # math-verify alone reads "Paris" as P*a*r*i*s and calls "Sirap" equal.
    assert verifier("Answer: paris.", "Paris") is True
    assert verifier("Answer: Sirap", "Paris") is False
    assert verifier("Answer: 分层抽样", "分层抽样") is True
    assert verifier("Answer: 系统抽样", "分层抽样") is False


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "\\boxed{\\frac{",
        "Answer: }}}{{{",
        "Answer: \\frac{",
        "\x00\x01",
        None,
        42.5,
        [{"content": None}],
        [],
    ],
)
def test_garbage_is_wrong_not_an_error(garbage):
    assert verifier(garbage, "42") is False


def test_missing_reference_is_never_right():
    assert verifier("Answer: 42", None) is False
    assert verifier("Answer: 42", "") is False


def test_power_towers_are_refused_fast_even_without_a_timeout():
    start = time.perf_counter()
    assert verifier("\\boxed{9^{9^{9^{9}}}}", "5") is False
    assert verifier("\\boxed{(x+1)^{5000}}", "x") is False
    assert verifier("\\boxed{2^{10}}", "1024") is True  # small powers are still compared
    assert time.perf_counter() - start < 3


def test_judge_overrides_the_rules():
    seen = []

    class Lenient:
        def __call__(self, prompt, completion, reference):
            seen.append((prompt, completion, reference))
            return True

    judged = Verifier(judge=Lenient())
    assert judged([{"role": "assistant", "content": "Answer: 41"}], 42, prompt="q?") is True
    assert seen == [("q?", "Answer: 41", "42")]
    assert isinstance(Lenient(), Judge) and isinstance(RuleJudge(), Judge)
    with pytest.raises(TypeError, match="must be callable"):
        Verifier(judge="gpt-4")


def test_shipped_judges():
    strict = Verifier(judge=RuleJudge(mode="exact"))
    assert strict("Answer: 1/2", "1/2") is True
    assert strict("Answer: 0.5", "1/2") is False  # the rules would say True in math mode
    assert verifier("Answer: 0.5", "1/2") is True
    lenient = Verifier(judge=ReferenceInCompletion())
    assert lenient("... so the total is 42.", "42") is True
    assert lenient("... so the total is 142.", "42") is False
    assert lenient(None, "42") is False


def test_pickles_and_works_off_the_main_thread():
    clone = pickle.loads(pickle.dumps(Verifier(extract=["answer_line"], mode="math")))
    assert clone("Answer: 1/2", "0.5") is True
    assert clone("\\boxed{1/2}", "0.5") is False  # only the answer line counts
    judged = pickle.loads(pickle.dumps(Verifier(extract=["answer_line"], judge=RuleJudge())))
    assert judged("\\boxed{1/2}", "0.5") is True  # the judge, with its own rules, decides
    assert pickle.loads(pickle.dumps(verifier))("\\boxed{0.25}", "\\frac{1}{4}") is True

    results = {}

    def check():
        results["right"] = verifier("\\boxed{0.25}", "\\frac{1}{4}")
        results["wrong"] = verifier("\\boxed{0.3}", "\\frac{1}{4}")
        results["tower"] = verifier("\\boxed{9^{9^{9^{9}}}}", "5")  # no alarm here: the guard must stop it

    thread = threading.Thread(target=check, daemon=True)
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive()
    assert results == {"right": True, "wrong": False, "tower": False}


def test_extract_answer():
    assert verifier.extract_answer("Option 3 is (B).") == "3"
    assert verifier.extract_answer("Option 3 is (B).", "B") == "B"  # a letter reference reads letters
    assert verifier.extract_answer([{"role": "assistant", "content": "Answer: $x$."}], "x") == "x"
    assert verifier.extract_answer("nothing here", "x") is None


def test_conversational_completion():
    assert verifier([{"role": "assistant", "content": "Answer: 7"}], "7") is True
    assert verifier([{"role": "assistant", "content": "Answer: 8"}], "7") is False


def test_configs_instantiate():
    default = instantiate(OmegaConf.load(REPO / "conf/verifier/default.yaml"))
    assert isinstance(default, Verifier)
    assert default("Answer: 9", "9") and not default("Answer: 8", "9")
    boxed = instantiate(OmegaConf.load(REPO / "conf/verifier/boxed.yaml"))
    assert boxed("\\boxed{3}", "3") is True
    assert boxed("Answer: 3", "3") is False  # only \boxed{} counts
    judged = instantiate(
        OmegaConf.create(
            {
                "_target_": "ablate.verify.Verifier",
                "extract": ["answer_line", "last_number"],
                "judge": {"_target_": "ablate.verify.RuleJudge", "mode": "exact"},
            }
        )
    )
    assert judged.extract == ["answer_line", "last_number"] and isinstance(judged.judge, RuleJudge)
    assert judged("Answer: yes", "Yes") is True


def test_bad_settings_list_the_choices():
    assert MODES == ("auto", "choice", "sequence", "math", "exact")
    with pytest.raises(
        ValueError, match=r"verifier\.mode='fuzzy': valid choices are auto, choice, sequence, math, exact"
    ):
        Verifier(mode="fuzzy")
    with pytest.raises(
        ValueError, match="valid choices are auto, boxed, answer_line, last_number, last_letter"
    ):
        Verifier(extract="first_number")
