"""The paper's judge: an LLM behind any OpenAI-compatible chat endpoint decides whether the final answer
of a (possibly cut-off) solution matches the reference, answering strictly YES or NO.

Works with vLLM's server (``vllm serve``), ``trl vllm-serve``, SGLang and ``transformers serve``::

    ablate train verifier=llm_judge verifier.judge.base_url=http://127.0.0.1:8000/v1 \\
        verifier.judge.model=Qwen/Qwen2.5-7B-Instruct

A batch (``judge_many``, one reward call) goes out as concurrent requests; verdicts are cached by
(question, answer tail, reference), so repeated completions cost nothing. An item whose request fails
after the retries counts as wrong and adds to ``failures`` (logged as ``judge/failures``). The server
is checked when the judge is built, so a judge that is down fails the run before training starts.
The API key is read from the environment variable ``api_key_env`` at each request, never stored.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

PROMPT = """You are grading an exam answer. Compare the final answer of the solution below with the \
reference answer. The solution may be cut off; judge only the final answer it states. If it states no \
final answer, or hedges between several answers, it does not match.

Question:
{question}

Solution (its last part):
{answer}

Reference answer:
{reference}

Does the final answer of the solution match the reference answer? Reply strictly YES or NO."""

# The server's reply is not an answer: retry. Other 4xx (bad model name, bad request) will not improve.
_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class JudgeUnavailable(ConnectionError):
    """The judge server cannot be reached, or does not serve the configured model."""


def question_text(prompt: Any) -> str:
    """The question of a prompt: a string, or the last user message of a conversation.

    >>> question_text([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "1+1?"}])
    '1+1?'
    """
    if prompt is None:
        return "(not given)"
    if isinstance(prompt, str):
        return prompt
    users = [m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
    return str(users[-1]) if users else str(prompt)


def parse_verdict(reply: str) -> bool | None:
    """YES -> True, NO -> False, anything else -> None (a failure, not a verdict).

    >>> parse_verdict(" Yes."), parse_verdict("NO"), parse_verdict("Maybe")
    (True, False, None)
    """
    word = reply.strip().strip("*`'\".").split(maxsplit=1)
    word = word[0].strip(".,!:;").upper() if word else ""
    return {"YES": True, "NO": False}.get(word)


class LLMJudge:
    """``judge(prompt, completion, reference) -> bool`` by an LLM on an OpenAI-compatible server.

    Args:
        base_url: the server's OpenAI API root, e.g. ``http://127.0.0.1:8000/v1`` (``/v1`` is added
            to a URL without a path).
        model: the model name the server serves (``GET /v1/models`` lists them).
        api_key_env: the environment variable holding the API key, if the server needs one.
        timeout_s: seconds per request; retries: further tries after a timeout, a refused connection
            or a 408/429/5xx reply, with a doubling pause from ``backoff_s``.
        concurrency: requests in flight at once for a batch.
        tail_chars: the end of the completion the judge sees (where its final answer is);
            question_chars: the start of the question it sees.
        max_tokens, temperature: for the reply (a single word, greedily).
        cache_size: verdicts kept; check: ask the server for its models when built.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout_s: float = 30.0,
        retries: int = 2,
        backoff_s: float = 0.5,
        concurrency: int = 16,
        tail_chars: int = 2000,
        question_chars: int = 4000,
        max_tokens: int = 4,
        temperature: float = 0.0,
        prompt: str = PROMPT,
        cache_size: int = 100_000,
        check: bool = True,
    ):
        if not base_url or urlsplit(str(base_url)).scheme not in ("http", "https"):
            raise ValueError(
                f"verifier.judge.base_url={base_url!r}: must be an http(s) URL, e.g. http://127.0.0.1:8000/v1"
            )
        if not model:
            raise ValueError("verifier.judge.model: required, the name the server serves (GET /v1/models)")
        for key, value in (
            ("timeout_s", timeout_s),
            ("concurrency", concurrency),
            ("tail_chars", tail_chars),
        ):
            if not value or value <= 0:
                raise ValueError(f"verifier.judge.{key}={value!r}: must be > 0")
        if retries < 0:
            raise ValueError(f"verifier.judge.retries={retries!r}: must be >= 0")
        base = str(base_url).rstrip("/")
        self.base_url = base if urlsplit(base).path else base + "/v1"
        self.model, self.api_key_env = model, api_key_env
        self.timeout_s, self.retries, self.backoff_s = float(timeout_s), int(retries), float(backoff_s)
        self.concurrency, self.tail_chars, self.question_chars = (
            int(concurrency),
            int(tail_chars),
            int(question_chars),
        )
        self.max_tokens, self.temperature, self.prompt, self.cache_size = (
            max_tokens,
            temperature,
            prompt,
            cache_size,
        )
        self.failures = 0  # items that got no verdict, since this judge was built
        self.requests = 0  # requests sent (tries included)
        self._cache: OrderedDict[tuple[str, str, str], bool] = OrderedDict()
        self._lock = threading.Lock()
        if check:
            self.check()

    # Pickled into reward workers and checkpoints: no lock, no cache, no network check on load.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"], state["_lock"] = OrderedDict(), None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def check(self) -> None:
        """Fail now, naming the URL, if the server is down or does not serve ``model``."""
        url = f"{self.base_url}/models"
        try:
            listed = self._request("GET", url, None, min(self.timeout_s, 5.0))
        except JudgeUnavailable as err:
            raise JudgeUnavailable(
                f"verifier.judge.base_url={self.base_url}: the judge server is not answering ({err}); "
                "start it (e.g. vllm serve MODEL) or fix the URL"
            ) from None
        served = [m.get("id") for m in listed.get("data", []) if isinstance(m, dict)]
        if served and self.model not in served:
            raise ValueError(
                f"verifier.judge.model={self.model!r}: {self.base_url} serves {', '.join(map(str, served))}"
            )

    def __call__(self, prompt: Any, completion: str, reference: str) -> bool:
        return self.judge_many([(prompt, completion, reference)])[0]

    def judge_many(self, items: Sequence[tuple[Any, str, str]]) -> list[bool]:
        """Verdicts for ``(prompt, completion, reference)`` items: cached ones at once, the rest
        (each distinct one once) as concurrent requests. A failed item is False."""
        keys = [self._key(p, c, r) for p, c, r in items]
        with self._lock:
            known = {k: self._cache[k] for k in keys if k in self._cache}
        todo = list(dict.fromkeys(k for k in keys if k not in known))
        if todo:
            workers = min(self.concurrency, len(todo))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="judge") as pool:
                verdicts = list(pool.map(self._judge_one, todo))
            with self._lock:
                for key, verdict in zip(todo, verdicts, strict=True):
                    if verdict is None:
                        self.failures += 1
                        continue
                    known[key] = self._cache[key] = verdict
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return [known.get(k, False) for k in keys]

    def _key(self, prompt: Any, completion: str, reference: str) -> tuple[str, str, str]:
        question = question_text(prompt)[: self.question_chars]
        return question, str(completion)[-self.tail_chars :], str(reference)

    def _judge_one(self, key: tuple[str, str, str]) -> bool | None:
        question, answer, reference = key
        body = {
            "model": self.model,
            "messages": [
                {
                    "role": "user",
                    "content": self.prompt.format(question=question, answer=answer, reference=reference),
                }
            ],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        url = f"{self.base_url}/chat/completions"
        try:
            reply = self._with_retries(url, body)
            content = reply["choices"][0]["message"]["content"] or ""
        except (JudgeUnavailable, KeyError, IndexError, TypeError) as err:
            log.warning("judge at %s failed on an item, counted wrong: %s", url, err)
            return None
        verdict = parse_verdict(content)
        if verdict is None:
            log.warning("judge at %s replied %r, not YES or NO: counted wrong", url, content[:80])
        return verdict

    def _with_retries(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(self.retries + 1):
            try:
                return self._request("POST", url, body, self.timeout_s)
            except JudgeUnavailable as err:
                if not getattr(err, "retry", True) or attempt == self.retries:
                    raise
                time.sleep(self.backoff_s * 2**attempt)
        raise AssertionError("unreachable")

    def _request(self, method: str, url: str, body: dict[str, Any] | None, timeout: float) -> dict[str, Any]:
        """One HTTP request; JudgeUnavailable (with ``retry``) naming the URL on any failure."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        with self._lock:
            self.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as err:
            detail = err.read().decode("utf-8", "replace")[:200]
            failure = JudgeUnavailable(f"{method} {url}: HTTP {err.code} {detail}")
            failure.retry = err.code in _RETRY_STATUS
            raise failure from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise JudgeUnavailable(f"{method} {url}: {type(reason).__name__}: {reason}") from None
        except json.JSONDecodeError as err:
            raise JudgeUnavailable(f"{method} {url}: not JSON ({err.msg})") from None

    def __repr__(self) -> str:
        # Never the key: only the name of the variable that holds it.
        return f"LLMJudge(base_url={self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"
