"""``distillery teacher serve``: a teacher behind an OpenAI-compatible HTTP API (standard library server).

Routes: ``GET /health`` (200 once the model is loaded: the socket opens only then), ``GET /v1/models``
(with the teacher's identity, weights fingerprint included, under ``distillery``), ``POST /v1/completions``
(``prompt`` text or token ids, ``max_tokens``, ``temperature``, ``logprobs``, ``stop``, ``seed``, vLLM's
``return_tokens_as_token_ids``) and ``POST /v1/chat/completions`` (the SFT rationale client's route).  A bad
request gets a 400 (404 for another model) with OpenAI's ``{"error": {"message": …}}``.  SIGTERM or Ctrl-C
stops it cleanly::

    distillery teacher serve --model tiny --profile tiny --host 127.0.0.1 --port 8000
    curl -s localhost:8000/v1/completions -d '{"model": "tiny", "prompt": "Hi", "max_tokens": 4, "logprobs": 2}'
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

from distillery.teacher.serve_engine import BadRequest, ServedModel
from distillery.teacher.serve_requests import parse_chat, parse_completion

MAX_BODY = 64 * 1024 * 1024


class Handler(BaseHTTPRequestHandler):
    """One request; the model is ``server.served`` (a :class:`ServedModel`)."""

    server: TeacherServer
    protocol_version = "HTTP/1.1"
    timeout = 10
    """Seconds an idle keep-alive connection is held: a stop waits for the handler threads (below)."""

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        kind = "invalid_request_error" if status < 500 else "server_error"
        self._reply(status, {"error": {"message": message, "type": kind, "code": status}})

    def do_GET(self) -> None:
        if self.path == "/health":
            self._reply(200, {"status": "ok", "model": self.server.served.name})
        elif self.path.rstrip("/") == "/v1/models":
            self._reply(200, self.server.served.models())
        else:
            self._error(404, f"no route GET {self.path}")

    def do_POST(self) -> None:
        route = self.path.rstrip("/")
        if route not in ("/v1/completions", "/v1/chat/completions"):
            self._error(404, f"no route POST {self.path}")
            return
        try:
            size = int(self.headers.get("Content-Length") or 0)
            if not 0 < size <= MAX_BODY:
                raise BadRequest(f"Content-Length {size}: a JSON body of at most {MAX_BODY} bytes is needed")
            try:
                body = json.loads(self.rfile.read(size).decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise BadRequest(f"the body is not JSON ({exc})") from None
            self._reply(200, self._answer(route, body))
        except BadRequest as exc:
            self._error(exc.status, str(exc))
        except Exception as exc:  # a model failure answers 500 and leaves the server up
            self._error(500, f"{type(exc).__name__}: {exc}")

    def _answer(self, route: str, body: Any) -> dict[str, Any]:
        served, default = self.server.served, self.server.default_max_tokens
        if route == "/v1/completions":
            return served.completions(parse_completion(body, served, 16))
        messages, req = parse_chat(body, served, default)
        return served.chat(messages, req)


class TeacherServer(ThreadingHTTPServer):
    # Handler threads are joined on close, not left as daemons: a daemon thread still alive when the interpreter
    # exits is unwound through C++ frames and aborted the process ("terminate called without an active exception",
    # exit -6) in about one stop in three.
    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], served: ServedModel, default_max_tokens: int,
                 verbose: bool = False) -> None:
        super().__init__(address, Handler)
        self.served, self.default_max_tokens, self.verbose = served, default_max_tokens, verbose


def check_address(host: str, port: int) -> None:
    """Fail in a second, before the model loads, when the address cannot be listened on (in use, no such host)."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        raise ValueError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})") from None


def serve(served: ServedModel, host: str, port: int, default_max_tokens: int, verbose: bool = False) -> None:
    """Serve until SIGTERM or Ctrl-C; prints the base URL (with the real port when ``port`` is 0) once ready."""
    try:
        server = TeacherServer((host, port), served, default_max_tokens, verbose)
    except OSError as exc:
        raise ValueError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})") from None
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever to return, so it must not run on the thread serving.
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown).start()

    previous = signal.signal(signal.SIGTERM, stop)
    print(f"serving {served.name} on http://{host}:{server.server_address[1]}/v1 (Ctrl-C or SIGTERM stops)",
          flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        signal.signal(signal.SIGTERM, previous)
        print(f"stopped after {served.served} completions", file=sys.stderr, flush=True)
