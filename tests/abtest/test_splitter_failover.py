"""A failing or absent challenger never takes the champion's traffic down: the splitter as its own process
in front of a real Triton that serves the champion (version 1) and has no challenger (version 2)."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from distillery.abtest.arms import Arm, SplitConfig, save_split
from distillery.abtest.local import splitter_process
from distillery.operator.analysis import fold_events
from tests.abtest.helpers import make_student

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _split(challenger_weight: float) -> SplitConfig:
    # The challenger's ensemble (relevance_v2) is not in the repository: Triton answers 404 for it.
    return SplitConfig("failover", "salt", "champion", (Arm("champion", "relevance_v1", "", 100 - challenger_weight),
                                                        Arm("challenger", "relevance_v2", "", challenger_weight)))


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _score(url: str, user: str) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"user_id": user, "query": "thai massage open late",
                       "items": [{"id": "a", "text": "Golden Thai Massage Spa | spa"},
                                 {"id": "b", "text": "Lucky Sushi Kitchen | restaurant"}]}).encode()
    req = urllib.request.Request(f"{url}/v1/relevance", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _swap_split(split: SplitConfig, path: Path) -> None:
    """Replace the split file in one rename, as a ConfigMap update does."""
    tmp = path.with_suffix(".tmp")
    save_split(split, tmp)
    os.replace(tmp, path)


def test_absent_challenger_keeps_the_splitter_ready_and_fails_over(tmp_path: Path) -> None:
    from distillery.export.repository import build_repository
    from distillery.serving.server import TritonServer

    repo = tmp_path / "repo"
    build_repository(make_student(tmp_path / "s1", 1), repo, version=1)
    split_file = tmp_path / "split.json"
    save_split(_split(0), split_file)
    exposures = tmp_path / "exposures.jsonl"
    with TritonServer(repo) as triton, \
            splitter_process(split_file, triton.http_url, exposures, tmp_path / "splitter.log") as url:
        # splitter_process returned: /ready answered 200 with a zero-weight challenger Triton does not have.
        status, body = _get(f"{url}/ready")
        assert status == 200 and body["arms"] == {"champion": True}, body

        _swap_split(_split(50), split_file)
        deadline = time.monotonic() + 30
        while _get(f"{url}/admin/split")[1]["arms"][1]["weight"] != 50:
            assert time.monotonic() < deadline, "the splitter did not pick the new split up"
            time.sleep(0.2)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: _score(url, f"user-{i}"), range(80)))

        assert [s for s, _ in answers] == [200] * 80, [b for s, b in answers if s != 200][:3]
        by_arm = {arm: [b for _, b in answers if b["arm"] == arm] for arm in ("champion", "challenger")}
        assert by_arm["champion"] and by_arm["challenger"], "both arms should get some of 80 users at 50/50"
        assert all(not b["fallback"] and b["served_by"] == "champion" for b in by_arm["champion"])
        # Every challenger user was served, by the champion, and the failover is visible.
        assert all(b["fallback"] and b["served_by"] == "champion" for b in by_arm["challenger"])
        assert _get(f"{url}/ready")[0] == 200
        metrics = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
        n = len(by_arm["challenger"])
        assert f'splitter_requests_total{{arm="challenger",outcome="fallback"}} {n}' in metrics
        assert 'outcome="error"' not in metrics

    # The gate sees each failover as the challenger's error, the champion's requests as clean.
    lines = [json.loads(line) for line in exposures.read_text().splitlines()]
    _, ops = fold_events(lines)
    assert (ops["challenger"].requests, ops["challenger"].errors) == (n, n)
    assert ops["champion"].errors == 0 and ops["champion"].requests == 80 - n
