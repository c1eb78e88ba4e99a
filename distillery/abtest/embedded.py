"""A splitter on its own event loop in a background thread (studies and tests with injected backends).

The production path runs the splitter as its own process (``python -m distillery.abtest.splitter_main``);
this keeps an injected in-process backend (delays, failures) reachable over real HTTP on loopback.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType

from aiohttp import web

from distillery.abtest.splitter import SplitterState, start


class ThreadedSplitter:
    """``with ThreadedSplitter(state) as url: ...`` serves ``state`` on a free loopback port."""

    def __init__(self, state: SplitterState, host: str = "127.0.0.1") -> None:
        self.state, self.host = state, host
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="splitter", daemon=True)
        self._runner: web.AppRunner | None = None
        self.url = ""

    def __enter__(self) -> str:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(start(self.state, self.host, 0), self.loop)
        self._runner, self.url = fut.result(timeout=30)
        return self.url

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()
