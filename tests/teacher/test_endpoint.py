"""The OpenAI-compatible endpoint client against a local HTTP server on loopback."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from distillery.data import THREE_CLASS, Pair
from distillery.teacher.endpoint import EndpointClient, EndpointError, endpoint_answers


class Script:
    """Replies served in order: ("ok", text) | ("500", _) | ("sleep", _) | ("malformed", _)."""

    def __init__(self) -> None:
        self.replies: list[tuple[str, str]] = []
        self.requests: list[dict] = []


@pytest.fixture()
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            script.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
            kind, text = script.replies.pop(0) if script.replies else ("ok", "Reasoning: x\nLabel: Exact")
            if kind == "sleep":
                time.sleep(0.6)
            if kind == "500":
                self.send_response(500)
                self.end_headers()
                return
            payload = b"{not json" if kind == "malformed" else json.dumps(
                {"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the client gave up (timeout)
                self.wfile.write(payload)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", script
    httpd.shutdown()
    httpd.server_close()


def client(url: str, retries: int = 2) -> EndpointClient:
    return EndpointClient(url, "judge", api_key="sk-test", timeout=0.3, retries=retries, backoff=0.01)


def test_reply_and_request_shape(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [("ok", "Reasoning: fine\nLabel: Partial")]
    assert client(url).chat([{"role": "user", "content": "hi"}]) == "Reasoning: fine\nLabel: Partial"
    req = script.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["model"] == "judge" and req["auth"] == "Bearer sk-test"


def test_retries_a_500_a_timeout_and_a_malformed_reply(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [("500", ""), ("sleep", ""), ("malformed", ""), ("ok", "Label: Exact")]
    assert client(url, retries=3).chat([{"role": "user", "content": "hi"}]) == "Label: Exact"
    assert len(script.requests) == 4


def test_gives_up_with_a_clear_error(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [("500", ""), ("500", ""), ("500", "")]
    with pytest.raises(EndpointError, match=r"no valid reply after 3 attempts.*HTTP 500"):
        client(url).chat([{"role": "user", "content": "hi"}])
    script.replies = [("malformed", "")] * 3
    with pytest.raises(EndpointError, match="malformed reply"):
        client(url).chat([{"role": "user", "content": "hi"}])


def test_unreachable_endpoint() -> None:
    with pytest.raises(EndpointError, match="unreachable"):
        client("http://127.0.0.1:9/v1", retries=0).chat([{"role": "user", "content": "hi"}])


def test_rejection_sampling_keeps_only_answers_with_the_gold_label(server: tuple[str, Script]) -> None:
    url, script = server
    pairs = [Pair("q1", "red shoe", "i1", title="Red shoe", label="Exact"),
             Pair("q2", "blue hat", "i2", title="Green scarf", label="Irrelevant")]
    script.replies = [("ok", "Reasoning: close\nLabel: Partial"), ("ok", "Reasoning: it is a red shoe\nLabel: Exact"),
                      ("ok", "Label: Exact"), ("ok", "no label"), ("ok", "Reasoning: r\nLabel: Partial")]
    answers, stats = endpoint_answers(pairs, THREE_CLASS, client(url), 3, ["title"], 100)
    assert answers == ["Reasoning: it is a red shoe\nLabel: Exact", None]
    assert (stats.asked, stats.accepted, stats.rejected_pairs) == (5, 1, ["q2/i2"])
