"""A real OpenAI-compatible chat server on 127.0.0.1 for testing the LLM judge over real HTTP.

Its "model" is a deterministic rule (``rule``: the prompt's text -> the reply) instead of a network; the
default reads the judge prompt's solution and reference and answers YES when the reference is the last
word of the solution's last line, else NO.
It implements ``GET /v1/models`` and ``POST /v1/chat/completions`` as vLLM and ``transformers serve``
do, records every request (path, headers, JSON body), and counts requests in flight. Solutions that
contain ``SLOW`` are answered after ``slow_s`` seconds, ``BROKEN`` gets HTTP 500, ``MUMBLE`` a reply
that is neither YES nor NO.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_SECTION = re.compile(
    r"Solution \(its last part\):\n(?P<answer>.*)\n\nReference answer:\n(?P<ref>.*?)\n\n", re.S
)


def rule_verdict(content: str) -> str:
    """YES if the reference is the last word of the solution's last non-empty line."""
    found = _SECTION.search(content)
    if not found:
        return "NO"
    lines = [line for line in found["answer"].splitlines() if line.strip()]
    words = re.sub(r"[$.,。:：]", " ", lines[-1]).split() if lines else []
    return "YES" if words and words[-1].casefold() == found["ref"].strip().casefold() else "NO"


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a slow reply must not hold up stop()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out on purpose (the timeout tests) leaves a broken pipe: not an error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class JudgeServer:
    """``with JudgeServer() as server:`` serves at ``server.url`` (``http://127.0.0.1:PORT/v1``)."""

    def __init__(
        self,
        model: str = "rule-judge",
        slow_s: float = 3.0,
        latency_s: float = 0.0,
        rule: Callable[[str], str] = rule_verdict,
        port: int = 0,
    ):
        self.model, self.slow_s, self.latency_s, self.rule = model, slow_s, latency_s, rule
        self.requests: list[dict[str, Any]] = []
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> JudgeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def chats(self) -> list[dict[str, Any]]:
        """The JSON bodies of the chat requests received, in order."""
        return [r["body"] for r in self.requests if r["path"] == "/v1/chat/completions"]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet test output
                pass

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                with server._lock:
                    server.requests.append({"path": self.path, "headers": dict(self.headers), "body": None})
                if self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": server.model, "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with server._lock:
                    server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._chat(body)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _chat(self, body: dict[str, Any]) -> None:
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                if body.get("model") != server.model:
                    return self._send(404, {"error": {"message": f"model {body.get('model')!r} not served"}})
                content = body["messages"][-1]["content"]
                time.sleep(server.latency_s)
                if "SLOW" in content:
                    time.sleep(server.slow_s)
                if "BROKEN" in content:
                    return self._send(500, {"error": {"message": "internal error"}})
                reply = "Perhaps." if "MUMBLE" in content else server.rule(content)
                self._send(
                    200,
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "model": server.model,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": reply},
                                "finish_reason": "stop",
                            }
                        ],
                    },
                )
                return None

        return Handler
