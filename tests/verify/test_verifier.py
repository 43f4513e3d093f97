import pickle
import threading

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ablate.verify import ReferenceInCompletion, Verifier
from tests.conftest import REPO

verifier = Verifier()


@pytest.mark.parametrize(
    ("completion", "reference", "expected"),
    [
        ("Answer: CA", "AC", True),  # multi-choice is order-insensitive
        ("Answer: A, C", "AC", True),
        ("Answer: c", "C", True),
        ("Answer: AB", "AC", False),
        ("Answer: A", "AC", False),  # a subset is wrong
        ("I choose (B).", "B", True),
        ("I choose (B).", "D", False),
        ("Answer: The answer is C", "C", True),  # words on the answer line are not choice letters
        ("Answer: C because of the derivation", "C", True),
        ("Answer: bad", "ABD", False),
        ("Answer: A and D", "AD", True),
    ],
)
def test_choice(completion, reference, expected):
    assert verifier(completion, reference) is expected


@pytest.mark.parametrize(
    ("completion", "reference", "expected"),
    [
        ("\\boxed{\\frac{1}{2}}", "0.5", True),
        ("Answer: 0.5", "\\frac{1}{2}", True),
        ("Answer: 2.0", "2", True),
        ("Answer: 2", "3", False),
        ("\\boxed{(x+1)^2}", "x^2+2x+1", True),
        ("\\boxed{(x+1)^2}", "x^2+1", False),
        ("12+30=42\nAnswer: 42", "42", True),
        ("12+30=42\nAnswer: 43", "42", False),
        ("12+30=42", "42", True),  # no answer line: the last number
    ],
)
def test_math(completion, reference, expected):
    assert verifier(completion, reference) is expected


def test_exact_mode_normalises_case_space_and_dollars():
    exact = Verifier(mode="exact")
    assert exact("Answer: $Hello   World$.", "hello world")
    assert not exact("Answer: hello", "hello world")


def test_auto_mode_dispatch():
    assert verifier.kind("AC") == "choice"
    assert verifier.kind("\\frac{1}{2}") == "math"
    # Chinese text answers (GAOKAO fill-ins) still compare correctly through math-verify's symbols.
    assert verifier("Answer: 分层抽样", "分层抽样") and not verifier("Answer: 系统抽样", "分层抽样")
    assert verifier.kind("B", answer_type="exact") == "exact"
    # The row's answer_type wins: "B" as an exact string is not a letter set.
    assert Verifier()("Answer: b", "B", answer_type="exact")
    assert not Verifier()("Answer: B C", "BC", answer_type="exact")


def test_garbage_is_wrong_not_an_error():
    for garbage in ["", "\\boxed{\\frac{", "Answer: }}}{{{", "\x00\x01", None, [{"content": None}]]:
        assert verifier(garbage, "42") is False


def test_judge_overrides_the_rules():
    seen = []

    class Lenient:
        def __call__(self, prompt, completion, reference):
            seen.append((prompt, completion, reference))
            return True

    judged = Verifier(judge=Lenient())
    assert judged("Answer: 41", "42", prompt="q?") is True
    assert seen == [("q?", "Answer: 41", "42")]
    assert Verifier(judge=ReferenceInCompletion())(None, "42") is False
    assert Verifier(judge=ReferenceInCompletion())("... so the total is 42.", "42") is True


def test_pickles_and_works_off_the_main_thread():
    clone = pickle.loads(pickle.dumps(Verifier(extract=["answer_line"], mode="math")))
    assert clone("Answer: 1/2", "0.5")
    result = {}
    thread = threading.Thread(
        target=lambda: result.setdefault("ok", verifier("\\boxed{0.25}", "\\frac{1}{4}"))
    )
    thread.start()
    thread.join()
    assert result == {"ok": True}


def test_conversational_completion():
    assert verifier([{"role": "assistant", "content": "Answer: 7"}], "7")


def test_config_instantiates_and_bad_settings_list_choices():
    v = instantiate(OmegaConf.load(REPO / "conf/verifier/default.yaml"))
    assert v("Answer: 9", "9") and not v("Answer: 8", "9")
    with pytest.raises(
        ValueError, match=r"verifier\.mode='fuzzy': valid choices are auto, math, choice, exact"
    ):
        Verifier(mode="fuzzy")
    with pytest.raises(ValueError, match="valid choices are auto or a list of"):
        Verifier(extract="first_number")
    assert Verifier(extract="boxed")("Answer: 3", "3") is False  # only \boxed{} counts
