"""Scoring backends of the splitter: Triton (async HTTP, or the serving client), or an in-process function.

The splitter only needs ``score(arm, query, items, timeout_s) -> scores`` and ``ready(arm)``; tests and
the guardrail/failover studies inject a :class:`FunctionBackend` with per-arm delays and failures.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import aiohttp
import numpy as np

from distillery.abtest.arms import Arm
from distillery.abtest.rankers import expected_grade

DEFAULT_CLASSES = {3: ("Exact", "Partial", "Irrelevant"), 4: ("Exact", "Substitute", "Complement", "Irrelevant")}


class BackendError(RuntimeError):
    """A scoring call failed (error, timeout, malformed answer)."""


class ScoringBackend(Protocol):
    async def score(self, arm: Arm, query: str, items: list[str], timeout_s: float) -> list[float]: ...

    async def ready(self, arm: Arm, timeout_s: float) -> bool: ...

    async def close(self) -> None: ...


def to_scores(out: Any, n: int, classes: Sequence[str] | None = None) -> list[float]:
    """A model's output as one ranking score per item: a score vector as is; class probabilities
    as the expected relevance grade (class order from ``classes`` or the 3/4-class defaults)."""
    arr = np.asarray(out, dtype=float)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 2:
        names = classes or DEFAULT_CLASSES.get(arr.shape[1])
        if names is None or len(names) != arr.shape[1]:
            raise BackendError(f"model output has {arr.shape[1]} columns and no known class order")
        arr = expected_grade(arr, names)
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise BackendError(f"model output of shape {arr.shape} for {n} items, or not finite")
    return [float(x) for x in arr]


class FunctionBackend:
    """Scores with ``fn(arm, query, items)``; per-arm added delay, failure rate, or hard down."""

    def __init__(self, fn: Callable[[Arm, str, list[str]], Sequence[float]], *,
                 delay_ms: dict[str, float] | None = None, fail_rate: dict[str, float] | None = None,
                 down: set[str] | None = None, seed: int = 0) -> None:
        self.fn = fn
        self.delay_ms = dict(delay_ms or {})
        self.fail_rate = dict(fail_rate or {})
        self.down = set(down or ())
        self._rng = random.Random(seed)

    async def score(self, arm: Arm, query: str, items: list[str], timeout_s: float) -> list[float]:
        async def call() -> list[float]:
            if self.delay_ms.get(arm.name):
                await asyncio.sleep(self.delay_ms[arm.name] / 1000.0)
            if arm.name in self.down or self._rng.random() < self.fail_rate.get(arm.name, 0.0):
                raise BackendError(f"arm {arm.name}: injected failure")
            return to_scores(self.fn(arm, query, items), len(items))

        try:
            return await asyncio.wait_for(call(), timeout_s)
        except TimeoutError:
            raise BackendError(f"arm {arm.name}: timed out after {timeout_s:g}s") from None

    async def ready(self, arm: Arm, timeout_s: float) -> bool:
        return arm.name not in self.down

    async def close(self) -> None:
        return None


class TritonBackend:
    """Triton through ``distillery.serving.client.RelevanceClient`` (blocking) on a thread pool.

    One client per worker thread, because the underlying tritonclient HTTP/gRPC clients are not meant
    to be shared across threads; the timeout is enforced both by the client and by ``wait_for``.
    """

    def __init__(self, url: str, protocol: str = "http", max_workers: int = 16, timeout_s: float = 2.0,
                 client_factory: Callable[[], Any] | None = None) -> None:
        self.url, self.protocol, self.timeout_s = url, protocol, timeout_s
        self._factory = client_factory or self._default_factory
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="triton")

    def _default_factory(self) -> Any:
        from distillery.serving.client import RelevanceClient

        return RelevanceClient(self.url, protocol=self.protocol, timeout_s=self.timeout_s)

    def _client(self) -> Any:
        if getattr(self._local, "client", None) is None:
            self._local.client = self._factory()
        return self._local.client

    def _score_sync(self, arm: Arm, query: str, items: list[str]) -> list[float]:
        out = self._client().score([query] * len(items), items, model=arm.model, version=arm.version)
        return to_scores(out, len(items))

    async def score(self, arm: Arm, query: str, items: list[str], timeout_s: float) -> list[float]:
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._pool, self._score_sync, arm, query, items),
                                          timeout_s)
        except TimeoutError:
            raise BackendError(f"arm {arm.name}: Triton model {arm.model}:{arm.version or 'latest'} "
                               f"timed out after {timeout_s:g}s") from None
        except BackendError:
            raise
        except Exception as exc:  # the client raises its own types; the splitter only needs "failed, why"
            raise BackendError(f"arm {arm.name}: Triton model {arm.model}:{arm.version or 'latest'}: "
                               f"{type(exc).__name__}: {exc}") from exc

    async def ready(self, arm: Arm, timeout_s: float) -> bool:
        """Ready when the arm's model answers a real one-item request."""
        try:
            await self.score(arm, "readiness probe", ["readiness probe"], timeout_s)
        except BackendError:
            return False
        return True

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class TritonHttpBackend:
    """Triton's HTTP/REST inference API (KServe v2) called with aiohttp on the splitter's own event loop.

    The same ``relevance`` ensemble contract as ``RelevanceClient`` (BYTES inputs ``QUERY``/``ITEM``,
    FP32 output ``PROBS``), without the blocking client's thread pool (no GIL hand-offs between the
    event loop and worker threads). Requests above ``batch_size`` items go out as concurrent chunks
    (the ensemble's max batch). Compared with ``TritonBackend`` in docs/benchmarks.md (A/B section).
    """

    def __init__(self, url: str, batch_size: int = 64, max_connections: int = 64) -> None:
        self.base = url if url.startswith("http") else f"http://{url}"
        self.batch_size = batch_size
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _path(self, arm: Arm, what: str) -> str:
        version = f"/versions/{arm.version}" if arm.version else ""
        return f"{self.base}/v2/models/{arm.model}{version}/{what}"

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self.max_connections))
        return self._session

    async def _infer(self, arm: Arm, query: str, items: list[str], timeout_s: float) -> np.ndarray:
        n = len(items)
        body = {"inputs": [{"name": "QUERY", "shape": [n, 1], "datatype": "BYTES", "data": [query] * n},
                           {"name": "ITEM", "shape": [n, 1], "datatype": "BYTES", "data": items}],
                "outputs": [{"name": "PROBS"}]}
        where = f"arm {arm.name}: Triton model {arm.model}:{arm.version or 'latest'}"
        try:
            async with self._http().post(self._path(arm, "infer"), json=body,
                                         timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
                data = await resp.json(content_type=None)
        except TimeoutError:
            raise BackendError(f"{where} timed out after {timeout_s:g}s") from None
        except (aiohttp.ClientError, ValueError) as exc:
            raise BackendError(f"{where}: {type(exc).__name__}: {exc}") from None
        if resp.status != 200:
            reason = data.get("error", data) if isinstance(data, dict) else data
            raise BackendError(f"{where}: HTTP {resp.status}: {reason}")
        try:
            out = next(o for o in data["outputs"] if o["name"] == "PROBS")
            return np.asarray(out["data"], dtype=float).reshape(out["shape"])
        except (KeyError, StopIteration, ValueError, TypeError) as exc:
            raise BackendError(f"{where}: malformed answer ({exc})") from None

    async def score(self, arm: Arm, query: str, items: list[str], timeout_s: float) -> list[float]:
        chunks = [items[i:i + self.batch_size] for i in range(0, len(items), self.batch_size)]
        parts = await asyncio.gather(*(self._infer(arm, query, c, timeout_s) for c in chunks))
        return to_scores(np.concatenate(parts, axis=0), len(items))

    async def ready(self, arm: Arm, timeout_s: float) -> bool:
        """Ready when Triton reports the model ready and it answers a real one-item request."""
        try:
            timeout = aiohttp.ClientTimeout(total=timeout_s)
            async with self._http().get(self._path(arm, "ready"), timeout=timeout) as r:
                if r.status != 200:
                    return False
            await self.score(arm, "readiness probe", ["readiness probe"], timeout_s)
        except (BackendError, aiohttp.ClientError, TimeoutError):
            return False
        return True

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
