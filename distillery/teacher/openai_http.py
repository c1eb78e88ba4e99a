"""JSON over HTTP to an OpenAI-compatible server (standard library only): retries with exponential back-off,
a patience window, a client-side rate limit and request counters.

Both endpoint clients use it: the SFT rationale client (:mod:`distillery.teacher.endpoint`, a fixed number of
retries) and the annotation backend (:mod:`distillery.teacher.openai_backend`, which keeps retrying refused
connections for ``patience`` seconds so that a server restarted inside that window goes unnoticed)::

    from distillery.teacher.openai_http import HttpJson

    http = HttpJson("http://127.0.0.1:8000/v1", retries=None, patience=60.0, rate_limit=50.0)
    models = http.get("/models")
    reply = http.post("/completions", {"model": "tiny", "prompt": "Hi", "max_tokens": 4})
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


class EndpointError(RuntimeError):
    """The endpoint is unreachable, refuses the request, or keeps answering with errors."""


class Refused(EndpointError, ValueError):
    """The server refused the request (a 4xx other than 429): the request or the settings are wrong, so the CLI
    reports it as bad input, in one line."""


class Unreachable(EndpointError):
    """No server answered at the address (connection refused or reset) for the whole patience window."""


@dataclass
class RateLimiter:
    """At most ``rate`` requests per second across threads (0: unlimited), spaced evenly."""

    rate: float = 0.0
    _next: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def wait(self) -> None:
        if self.rate <= 0:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + 1.0 / self.rate
        if slot > now:
            time.sleep(slot - now)


@dataclass
class HttpJson:
    """POST/GET JSON to ``base_url``; transient failures (5xx, 429, timeouts, malformed replies and, with
    ``retry_unreachable``, refused or dropped connections) are retried with back-off ``backoff·2^k`` (capped at
    ``max_backoff``) until ``retries`` retries are spent (``None``: no count limit) or ``patience`` seconds
    have passed since the first attempt (0: no time limit; one of the two limits is required)."""

    base_url: str
    api_key: str | None = None
    timeout: float = 60.0
    retries: int | None = 3
    backoff: float = 0.5
    max_backoff: float = 4.0
    patience: float = 0.0
    rate_limit: float = 0.0
    retry_unreachable: bool = False
    requests: int = 0
    """Requests that got a valid reply."""
    retried: int = 0
    """Attempts that failed transiently and were retried."""
    _limiter: RateLimiter = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.retries is None and self.patience <= 0:
            raise ValueError(f"{self.base_url}: retries=None needs a patience > 0, else a dead server is retried "
                             "forever")
        self.base_url = self.base_url.rstrip("/")
        self._limiter = RateLimiter(self.rate_limit)

    def _send(self, path: str, body: dict[str, Any] | None) -> Any:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.base_url}{path}", data, headers, method="POST" if data else "GET")
        self._limiter.wait()
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            return json.loads(resp.read().decode("utf-8"))

    def get(self, path: str) -> Any:
        return self.request(path, None, lambda r: r)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request(path, body, lambda r: r)

    def request(self, path: str, body: dict[str, Any] | None, parse: Callable[[Any], T]) -> T:
        """``parse(reply)`` of the first valid reply; ``parse`` raising KeyError/IndexError/TypeError/ValueError
        marks a reply malformed (retried).  A 4xx other than 429 fails at once with the server's message."""
        start, attempt, last = time.monotonic(), 0, ""
        while True:
            try:
                out = parse(self._send(path, body))
                with self._lock:
                    self.requests += 1
                return out
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
                with exc:  # the error carries the open response: close it, retried or not
                    if exc.code < 500 and exc.code != 429:
                        raise Refused(f"{self.base_url}{path}: request refused ({last}: {_reason(exc)})") from None
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, TimeoutError):
                    last = "timeout"
                elif self.retry_unreachable:
                    last = f"unreachable ({exc.reason})"
                else:
                    raise Unreachable(f"{self.base_url}: endpoint unreachable ({exc.reason})") from None
            except TimeoutError:
                last = "timeout"
            except (ConnectionError, http.client.HTTPException) as exc:  # the server went away mid-request
                last = f"connection lost ({type(exc).__name__})"
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                last = f"malformed reply ({type(exc).__name__}: {exc})"
            attempt += 1
            delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
            spent = time.monotonic() - start
            if (self.retries is not None and attempt > self.retries) or (
                    self.patience > 0 and spent + delay > self.patience):
                self._give_up(path, attempt, spent, last)
            with self._lock:
                self.retried += 1
            time.sleep(delay)

    def _give_up(self, path: str, attempts: int, spent: float, last: str) -> None:
        where = f"{self.base_url}{path}"
        if last.startswith("unreachable"):
            raise Unreachable(f"{where}: endpoint {last} for {spent:.1f} s ({attempts} attempts); is the server "
                              "running at this address?")
        raise EndpointError(f"{where}: no valid reply after {attempts} attempts in {spent:.1f} s (last: {last})")


def _reason(exc: urllib.error.HTTPError) -> str:
    """The server's error message (OpenAI's ``{"error": {"message": …}}``) or the HTTP reason phrase."""
    try:
        detail = json.loads(exc.read().decode("utf-8"))["error"]["message"]
        return " ".join(str(detail).split())[:300]
    except (KeyError, TypeError, ValueError, OSError):
        return str(exc.reason)
