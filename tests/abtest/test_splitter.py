"""The splitter service over aiohttp's test server with an injected backend (no Triton)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading

import pytest
from aiohttp.test_utils import TestClient, TestServer

from distillery.abtest.arms import Router, save_split
from distillery.abtest.backends import FunctionBackend
from distillery.abtest.exposure import ExposureLog, read_exposures
from distillery.abtest.protocol import Limits
from distillery.abtest.splitter import SplitterState, build_app
from tests.abtest.helpers import two_arm


def _length_scores(arm, query, items):
    # champion prefers long texts, challenger short ones: the two arms rank visibly differently.
    sign = 1.0 if arm.name == "champion" else -1.0
    return [sign * len(t) for t in items]


def _state(tmp_path, *, down=(), delay=None, token="", split_file=False, hash_fn=None) -> SplitterState:
    split = two_arm()
    path = None
    if split_file:
        path = tmp_path / "split.json"
        save_split(split, path)
    router = Router(split, hash_fn=hash_fn) if hash_fn else Router(split)
    backend = FunctionBackend(_length_scores, down=set(down), delay_ms=delay)
    return SplitterState(router, backend, ExposureLog(tmp_path / "exposures.jsonl"), Limits(max_items=5),
                         path, token, poll_s=0.05)


async def _client(state: SplitterState) -> TestClient:
    client = TestClient(TestServer(build_app(state)))
    await client.start_server()
    return client


BODY = {"user_id": "u1", "query": "spa", "items": [{"id": "a", "text": "xx"}, {"id": "b", "text": "xxxx"}]}


@pytest.mark.asyncio
async def test_scores_rank_and_sticky_arm(tmp_path):
    client = await _client(_state(tmp_path, hash_fn=lambda s, u: 0 if int(u[1:]) % 2 == 0 else 9999))
    try:
        r0 = await (await client.post("/v1/relevance", json={**BODY, "user_id": "u0"})).json()
        r1 = await (await client.post("/v1/relevance", json={**BODY, "user_id": "u1"})).json()
        assert (r0["arm"], r0["ranking"]) == ("champion", ["b", "a"])
        assert (r1["arm"], r1["ranking"]) == ("challenger", ["a", "b"])
        again = await (await client.post("/v1/relevance", json={**BODY, "user_id": "u1"})).json()
        assert again["arm"] == "challenger" and not again["fallback"]
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_failing_challenger_is_served_by_champion_and_counted(tmp_path):
    state = _state(tmp_path, down={"challenger"}, hash_fn=lambda s, u: 9999)
    client = await _client(state)
    try:
        resp = await client.post("/v1/relevance", json=BODY)
        body = await resp.json()
        assert resp.status == 200 and body["arm"] == "challenger" and body["served_by"] == "champion"
        assert body["fallback"] and body["ranking"] == ["b", "a"]
        text = await (await client.get("/metrics")).text()
        assert 'splitter_requests_total{arm="challenger",outcome="fallback"} 1' in text
        assert 'splitter_backend_errors_total{arm="challenger"} 1' in text
        # A failing challenger is failed over: the splitter stays ready (the champion answers).
        ready = await client.get("/ready")
        assert ready.status == 200 and (await ready.json())["arms"] == {"champion": True}
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_champion_down_is_503_with_reason(tmp_path):
    client = await _client(_state(tmp_path, down={"champion"}, hash_fn=lambda s, u: 0))
    try:
        resp = await client.post("/v1/relevance", json=BODY)
        assert resp.status == 503 and "no arm could score" in (await resp.json())["error"]
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_timeouts_fail_over(tmp_path):
    state = _state(tmp_path, delay={"challenger": 500.0}, hash_fn=lambda s, u: 9999)
    state.router.split = dataclasses.replace(two_arm(), timeout_s=0.05)
    client = await _client(state)
    try:
        body = await (await client.post("/v1/relevance", json=BODY)).json()
        assert body["fallback"] and body["served_by"] == "champion"
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_bad_requests_get_4xx_with_reason(tmp_path):
    client = await _client(_state(tmp_path))
    try:
        r = await client.post("/v1/relevance", data=b"not json")
        assert r.status == 400 and "not JSON" in (await r.json())["error"]
        r = await client.post("/v1/relevance", json={**BODY, "items": ["x"] * 6})
        assert r.status == 413 and "limit 5" in (await r.json())["error"]
        r = await client.post("/v1/relevance", data=b"x" * (2 << 20))
        assert r.status == 413
        text = await (await client.get("/metrics")).text()
        assert 'splitter_bad_requests_total{status="413"} 2' in text
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_admin_endpoint_validates_authorises_and_moves_minimally(tmp_path):
    client = await _client(_state(tmp_path, token="s3cret"))
    auth = {"Authorization": "Bearer s3cret"}
    try:
        r = await client.post("/admin/weights", json={"weights": {"champion": 90, "challenger": 10}})
        assert r.status == 401
        r = await client.post("/admin/weights", json={"weights": {"champion": 90, "challenger": 20}}, headers=auth)
        assert r.status == 400 and "sum to 100" in (await r.json())["error"]
        r = await client.post("/admin/weights", json={"weights": {"champion": 90, "challenger": 10}}, headers=auth)
        assert r.status == 200 and (await r.json())["moved_buckets"] == 4000
        split = await (await client.get("/admin/split")).json()
        assert split["buckets"] == {"champion": 9000, "challenger": 1000}
        assert 'splitter_arm_weight_percent{arm="challenger"} 10' in await (await client.get("/metrics")).text()
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_split_file_is_reloaded_and_a_bad_file_is_refused(tmp_path):
    state = _state(tmp_path, split_file=True)
    client = await _client(state)
    try:
        assert state.split_path is not None
        save_split(two_arm((20, 80)), state.split_path)
        for _ in range(100):
            await asyncio.sleep(0.02)
            if state.router.split.weights["challenger"] == 80:
                break
        assert state.router.table.counts() == {"champion": 2000, "challenger": 8000}
        state.split_path.write_text(json.dumps({"experiment": "e", "salt": "s1", "champion": "champion", "arms": [
            {"name": "champion", "model": "m", "weight": 70}, {"name": "challenger", "model": "m", "weight": 70}]}))
        await asyncio.sleep(0.2)
        assert state.router.split.weights["challenger"] == 80  # the last good split stays
        text = await (await client.get("/metrics")).text()
        assert 'splitter_config_reloads_total{result="invalid",source="file"} 1' in text
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_exposure_log_has_every_line_whole_under_concurrency(tmp_path):
    client = await _client(_state(tmp_path, delay={"champion": 1.0, "challenger": 1.0}))
    try:
        bodies = [{**BODY, "user_id": f"u{i}"} for i in range(300)]
        resps = await asyncio.gather(*(client.post("/v1/relevance", json=b) for b in bodies))
        ids = {(await r.json())["request_id"] for r in resps}
    finally:
        await client.close()
    records = read_exposures(tmp_path / "exposures.jsonl")
    assert len(records) == 300 and {r["request_id"] for r in records} == ids
    assert all(set(r) >= {"user_id", "arm", "request_id", "items", "latency_ms"} for r in records)


def test_exposure_log_survives_threads(tmp_path):
    log = ExposureLog(tmp_path / "x.jsonl")
    payload = "y" * 5000  # longer than a pipe buffer: a torn line would show
    threads = [threading.Thread(target=lambda k=k: [log.write({"t": k, "i": i, "p": payload}) for i in range(200)])
               for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    records = read_exposures(tmp_path / "x.jsonl")
    assert len(records) == 1600 and len({(r["t"], r["i"]) for r in records}) == 1600


def test_configmap_style_symlink_swap_is_picked_up(tmp_path):
    """Kubernetes updates a mounted ConfigMap by swapping the ``..data`` symlink to a new directory."""
    import os

    mount = tmp_path / "mount"
    (mount / "..v1").mkdir(parents=True)
    save_split(two_arm((50, 50)), mount / "..v1" / "split.json")
    os.symlink("..v1", mount / "..data")
    os.symlink("..data/split.json", mount / "split.json")
    state = _state(tmp_path)
    state.split_path = mount / "split.json"
    assert not state.reload_file() or state.router.split.weights["challenger"] == 50
    (mount / "..v2").mkdir()
    save_split(two_arm((10, 90)), mount / "..v2" / "split.json")
    os.symlink("..v2", mount / "..tmp")
    os.replace(mount / "..tmp", mount / "..data")  # atomic, as the kubelet does
    assert state.reload_file()
    assert state.router.split.weights == {"champion": 10, "challenger": 90}
    assert state.router.table.counts() == {"champion": 1000, "challenger": 9000}
