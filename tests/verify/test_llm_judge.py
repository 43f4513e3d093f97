"""The LLM judge against a real OpenAI-compatible HTTP server on 127.0.0.1 (tests/verify/judge_server.py)."""

import pickle
import socket
import time

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ablate.verify import JudgeUnavailable, LLMJudge, Verifier
from ablate.verify.llm_judge import parse_verdict, question_text
from tests.conftest import REPO
from tests.verify.judge_server import JudgeServer, rule_verdict

QUESTION = "What is 6 times 7?"


@pytest.fixture
def server():
    with JudgeServer() as running:
        yield running


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_request_format_and_key_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sk-secret-123")
    judge = LLMJudge(server.url, "rule-judge", api_key_env="JUDGE_KEY")
    assert [r["path"] for r in server.requests] == ["/v1/models"]  # checked when built
    assert judge([{"role": "user", "content": QUESTION}], "6*7 is\n42", "42") is True
    assert judge(QUESTION, "6*7 is\n41", "42") is False
    first, second = server.chats()
    assert first["model"] == "rule-judge" and first["max_tokens"] == 4 and first["temperature"] == 0.0
    [message] = first["messages"]
    assert message["role"] == "user"
    assert message["content"].startswith("You are grading an exam answer.")
    assert (
        f"Question:\n{QUESTION}\n\nSolution (its last part):\n6*7 is\n42\n\nReference answer:\n42\n\n"
        in (message["content"])
    )
    assert message["content"].endswith("Reply strictly YES or NO.")
    assert second["messages"][0]["content"].count("6*7 is\n41") == 1
    auth = [r["headers"].get("Authorization") for r in server.requests]
    assert auth == ["Bearer sk-secret-123"] * 3
    assert "sk-secret" not in repr(judge) and "sk-secret" not in str(pickle.dumps(judge))


def test_no_key_no_header(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    LLMJudge(server.url, "rule-judge")(None, "42", "42")
    assert all("Authorization" not in r["headers"] for r in server.requests)
    assert "Question:\n(not given)\n" in server.chats()[0]["messages"][0]["content"]


def test_a_batch_goes_out_concurrently_once_per_distinct_item():
    with JudgeServer(latency_s=0.5) as server:
        judge = LLMJudge(server.url, "rule-judge", concurrency=8)
        items = [(QUESTION, f"so it is {n}", "42") for n in (40, 41, 42, 43, 44, 45)]
        start = time.perf_counter()
        verdicts = judge.judge_many([*items, items[2], items[0]])  # two repeats in the batch
        elapsed = time.perf_counter() - start
        assert verdicts == [False, False, True, False, False, False, True, False]
        assert len(server.chats()) == 6  # each distinct item once
        assert server.max_in_flight >= 3
        assert elapsed < 2.5  # one after another: 6 x 0.5 s


def test_the_cache_answers_repeats_without_a_request(server):
    judge = LLMJudge(server.url, "rule-judge", tail_chars=len("so it is 42"))
    items = [(QUESTION, "long reasoning ... so it is 42", "42"), (QUESTION, "so it is 41", "42")]
    assert judge.judge_many(items) == [True, False]
    sent = len(server.requests)
    assert judge.judge_many(items) == [True, False]
    # Only the answer tail is the key: another start with the same ending is the same item.
    assert judge(QUESTION, "different reasoning, so it is 42", "42") is True
    assert len(server.requests) == sent  # nothing sent the second time
    assert judge(QUESTION, "so it is 42", "41") is False  # another reference is another item
    assert len(server.requests) == sent + 1


def test_a_server_that_is_down_fails_fast_naming_the_url():
    url = f"http://127.0.0.1:{free_port()}/v1"
    start = time.perf_counter()
    with pytest.raises(
        JudgeUnavailable, match=rf"verifier\.judge\.base_url={url}: the judge server is not answer"
    ):
        LLMJudge(url, "rule-judge")
    assert time.perf_counter() - start < 10


def test_a_server_that_goes_down_counts_items_wrong():
    with JudgeServer() as server:
        judge = LLMJudge(server.url, "rule-judge", retries=1, backoff_s=0.01)
    start = time.perf_counter()
    assert judge.judge_many([(QUESTION, "42", "42"), (QUESTION, "41", "42")]) == [False, False]
    assert judge.failures == 2 and time.perf_counter() - start < 10


def test_one_slow_item_times_out_and_only_it_is_wrong():
    with JudgeServer(slow_s=3.0) as server:
        judge = LLMJudge(server.url, "rule-judge", timeout_s=0.5, retries=1, backoff_s=0.05)
        verifier = Verifier(judge=judge)
        logged = []
        start = time.perf_counter()
        scores = verifier.score_many(
            ["so 42", "SLOW so 42", "so 41"],
            ["42", "42", "42"],
            log_metric=lambda k, v: logged.append((k, v)),
        )
        assert time.perf_counter() - start < 2.5  # two tries of 0.5 s, the others alongside
        assert scores == [1.0, 0.0, 0.0]
        assert logged == [("judge/failures", 1.0)]
        assert sum("SLOW" in b["messages"][0]["content"] for b in server.chats()) == 2  # tried, retried
        assert judge.failures == 1
        assert verifier.score_many(["SLOW so 42"], ["42"], log_metric=lambda k, v: logged.append((k, v))) == [
            0.0
        ]
        assert logged[-1] == ("judge/failures", 1.0)  # a failure is not cached: asked again


def test_server_errors_are_retried_and_odd_replies_are_failures(server):
    judge = LLMJudge(server.url, "rule-judge", retries=2, backoff_s=0.01)
    assert judge.judge_many([(QUESTION, "BROKEN 42", "42"), (QUESTION, "MUMBLE 42", "42")]) == [False, False]
    contents = [b["messages"][0]["content"] for b in server.chats()]
    assert sum("BROKEN" in c for c in contents) == 3  # 500: the first try and two retries
    assert sum("MUMBLE" in c for c in contents) == 1  # a reply that is not YES/NO is not retried
    assert judge.failures == 2


def test_bad_settings_name_the_key(server):
    with pytest.raises(
        ValueError, match=r"verifier\.judge\.model='gpt-9': http://127.0.0.1:\d+/v1 serves rule-judge"
    ):
        LLMJudge(server.url, "gpt-9")
    with pytest.raises(
        ValueError, match=r"verifier\.judge\.base_url='localhost:8000': must be an http\(s\) URL"
    ):
        LLMJudge("localhost:8000", "rule-judge")
    with pytest.raises(ValueError, match=r"verifier\.judge\.timeout_s=0: must be > 0"):
        LLMJudge(server.url, "rule-judge", timeout_s=0)
    root = server.url.removesuffix("/v1")
    assert LLMJudge(root, "rule-judge").base_url == server.url  # /v1 added to a bare host


def test_config_builds_a_verifier_with_the_judge(server):
    cfg = OmegaConf.load(REPO / "conf/verifier/llm_judge.yaml")
    with pytest.raises(Exception, match=r"judge\.base_url"):
        instantiate(cfg)  # ??? until given
    cfg.judge.base_url, cfg.judge.model = server.url, "rule-judge"
    verifier = instantiate(cfg)
    assert isinstance(verifier.judge, LLMJudge)
    assert verifier("Answer: 42", "42", prompt=QUESTION) is True
    assert verifier("Answer: 41", "42", prompt=QUESTION) is False
    clone = pickle.loads(pickle.dumps(verifier))  # reward workers: no check, no cache carried over
    sent = len(server.requests)
    assert clone("Answer: 42", "42", prompt=QUESTION) is True
    assert len(server.requests) == sent + 1
    cfg.judge.base_url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(
        Exception, match=r"verifier\.judge\.base_url=http://127\.0\.0\.1:\d+/v1: the judge server"
    ):
        instantiate(cfg)


def test_rule_of_the_test_server_and_helpers():
    prompt = "Solution (its last part):\nthus\n$42$.\n\nReference answer:\n42\n\nDoes"
    assert rule_verdict(prompt) == "YES" and rule_verdict(prompt.replace("$42$", "43")) == "NO"
    assert [parse_verdict(r) for r in ("YES", "no.", "**Yes**", "", "Yesterday")] == [
        True,
        False,
        True,
        None,
        None,
    ]
    assert question_text([{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a"}]) == "q1"
