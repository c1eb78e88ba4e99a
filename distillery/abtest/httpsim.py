"""The simulator's HTTP side: serve each batch's searches through a running splitter.

Requests of a batch go out concurrently (bounded by ``concurrency``); outcomes are then simulated in
user order (see :mod:`simulator`), so results do not depend on the order in which answers arrive.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import aiohttp

from distillery.abtest.experiment import ServeFn
from distillery.abtest.simulator import BatchPlan, QueryGroup, Served

ITEM_FIELDS = ("title", "brand", "color", "attributes", "bullet_points", "description")


def request_body(user_id: str, q: QueryGroup) -> dict[str, Any]:
    """A splitter request for one search: item fields as objects (the server joins them per the model)."""
    items = [{"id": p.item_id, **{f: getattr(p, f) for f in ITEM_FIELDS if getattr(p, f)}} for p in q.items]
    return {"user_id": user_id, "query": q.query, "items": items}


async def _one(session: aiohttp.ClientSession, url: str, body: dict[str, Any], index: dict[str, int],
               sem: asyncio.Semaphore) -> Served:
    async with sem:
        try:
            async with session.post(f"{url}/v1/relevance", json=body) as resp:
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
            # The user saw an error page: nothing shown, counted as a failure of an unknown arm.
            return Served("", [], 0.0, True, f"client-error:{type(exc).__name__}")
    if resp.status != 200:
        return Served(str(data.get("arm", "")), [], float(data.get("latency_ms", 0.0)), True,
                      str(data.get("request_id", "")))
    order = [index[i] for i in data["ranking"]]
    return Served(data["arm"], order, float(data["latency_ms"]), bool(data["fallback"]), data["request_id"])


async def serve_batch(url: str, plan: BatchPlan, queries: Sequence[QueryGroup], concurrency: int,
                      timeout_s: float = 30.0) -> list[Served]:
    sem = asyncio.Semaphore(concurrency)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        tasks = []
        for u, qi in zip(plan.session_user, plan.session_query, strict=True):
            q = queries[qi]
            index = {p.item_id: j for j, p in enumerate(q.items)}
            tasks.append(_one(session, url, request_body(plan.user_ids[u], q), index, sem))
        return list(await asyncio.gather(*tasks))


def http_server(url: str, queries: Sequence[QueryGroup], concurrency: int = 16) -> ServeFn:
    """A ``serve`` function that goes through the splitter at ``url``."""

    def serve(plan: BatchPlan) -> list[Served]:
        return asyncio.run(serve_batch(url, plan, queries, concurrency))

    return serve
