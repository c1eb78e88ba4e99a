"""Request parsing and size limits of the splitter (no server)."""

from __future__ import annotations

import json

import pytest

from distillery.abtest.promtext import Registry
from distillery.abtest.protocol import BadRequest, Limits, parse_request, ranking

L = Limits(max_body_bytes=2000, max_items=3, max_query_chars=20, max_item_chars=50)


def _body(**kw) -> bytes:
    obj = {"user_id": "u1", "query": "spa", "items": ["a", {"id": "x", "text": "b"}, {"title": "T", "brand": "B"}]}
    obj.update(kw)
    return json.dumps(obj).encode()


def test_items_as_strings_objects_and_fields():
    r = parse_request(_body(), L)
    assert r.item_ids == ["0", "x", "2"] and r.item_texts[:2] == ["a", "b"]
    assert json.loads(r.item_texts[2]) == {"title": "T", "brand": "B"}


@pytest.mark.parametrize(("body", "status", "match"), [
    (b"{nope", 400, "not JSON"),
    (_body(user_id=""), 400, "user_id"),
    (_body(query=3), 400, "query"),
    (_body(items=[]), 400, "non-empty list"),
    (_body(items=["a", "b", "c", "d"]), 413, "4 items > limit 3"),
    (_body(query="q" * 21), 413, "query: 21 characters"),
    (_body(items=["x" * 51]), 413, r"items\[0\]: 51 characters"),
    (_body(items=[{"id": "a", "text": "1"}, {"id": "a", "text": "2"}]), 400, "unique"),
    (_body(items=[7]), 400, r"items\[0\]"),
    (_body(extra=1), 400, "unknown field"),
    (b"x" * 2001, 413, "limit 2000"),
])
def test_bad_requests_get_the_reason(body, status, match):
    with pytest.raises(BadRequest, match=match) as info:
        parse_request(body, L)
    assert info.value.status == status


def test_ranking_is_descending_and_stable():
    assert ranking([0.1, 0.9, 0.5, 0.9]) == [1, 3, 2, 0]


def test_prometheus_exposition_of_labelled_histograms():
    reg = Registry()
    h = reg.histogram("lat_seconds", "latency", (0.01, 0.1))
    c = reg.counter("req_total", "requests")
    for v in (0.005, 0.05, 0.5):
        h.observe(v, arm="a")
    c.inc(arm='x"y')
    text = reg.render()
    assert 'lat_seconds_bucket{arm="a",le="0.01"} 1' in text
    assert 'lat_seconds_bucket{arm="a",le="0.1"} 2' in text
    assert 'lat_seconds_bucket{arm="a",le="+Inf"} 3' in text
    assert 'lat_seconds_count{arm="a"} 3' in text and "# TYPE lat_seconds histogram" in text
    assert 'req_total{arm="x\\"y"} 1' in text


def test_triton_backend_maps_client_failures_and_probabilities():
    import asyncio

    import numpy as np

    from distillery.abtest.arms import Arm
    from distillery.abtest.backends import BackendError, TritonBackend

    class FakeClient:
        def score(self, queries, items, model="relevance", version=""):
            if model == "broken":
                raise RuntimeError("model not found")
            if model == "slow":
                import time

                time.sleep(0.5)
            return np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])[: len(items)]

    backend = TritonBackend("127.0.0.1:1", client_factory=FakeClient)

    async def go():
        ok = await backend.score(Arm("a", "relevance"), "q", ["x", "y"], 1.0)
        assert ok[0] > ok[1]  # expected grade: "Exact"-heavy first
        with pytest.raises(BackendError, match=r"broken.*model not found"):
            await backend.score(Arm("b", "broken"), "q", ["x"], 1.0)
        with pytest.raises(BackendError, match="timed out"):
            await backend.score(Arm("c", "slow"), "q", ["x"], 0.05)
        assert await backend.ready(Arm("a", "relevance"), 1.0)
        assert not await backend.ready(Arm("b", "broken"), 1.0)
        await backend.close()

    asyncio.run(go())
