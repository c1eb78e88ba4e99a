"""``POST /events``: click/conversion events as JSON Lines, idempotent by event id across replays, restarts and
replicas, written where the gate reads them (real splitters over loopback HTTP, injected scoring backend)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from distillery.abtest.arms import Router
from distillery.abtest.backends import FunctionBackend
from distillery.abtest.embedded import ThreadedSplitter
from distillery.abtest.events import EventStore
from distillery.abtest.exposure import ExposureLog
from distillery.abtest.splitter import SplitterState
from distillery.operator.analysis import fold_events, read_events
from tests.abtest.helpers import two_arm


def _state(folder: Path, pod: str) -> SplitterState:
    """What one splitter pod holds: its own exposure and event logs on the shared volume ``folder``."""
    return SplitterState(Router(two_arm()), FunctionBackend(lambda arm, q, items: [len(t) for t in items]),
                         ExposureLog(folder / f"{pod}.jsonl"), events=EventStore(folder / f"events-{pod}.jsonl"))


def _post(url: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(f"{url}{path}", body, {"Content-Type": "application/x-ndjson"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _jsonl(*events: dict[str, Any]) -> bytes:
    return ("\n".join(json.dumps(e) for e in events) + "\n").encode()


CLICK = {"event_id": "e1", "event": "click", "user_id": "u1", "item_id": "a"}
BUY = {"event_id": "e2", "event": "conversion", "user_id": "u1", "item_id": "a", "value": 30.0}
SEARCH = {"user_id": "u1", "query": "spa", "items": [{"id": "a", "text": "xx"}, {"id": "b", "text": "xxxx"}]}


def test_events_are_counted_once_across_replays_restarts_and_replicas(tmp_path: Path) -> None:
    replica = _state(tmp_path, "splitter-c")  # a second replica, started before any event arrived
    with ThreadedSplitter(_state(tmp_path, "splitter-a")) as url:
        assert _post(url, "/v1/relevance", json.dumps(SEARCH).encode())[0] == 200
        # A batch repeating one of its own events: the repeat is a duplicate.
        assert _post(url, "/events", _jsonl(CLICK, BUY, CLICK)) == (200, {"accepted": 2, "duplicates": 1})
        assert _post(url, "/events", _jsonl(CLICK, BUY)) == (200, {"accepted": 0, "duplicates": 2})
        metrics = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
        assert 'splitter_events_total{result="accepted"} 2' in metrics
        assert 'splitter_events_total{result="duplicate"} 3' in metrics
    # The pod restarts under a new name (a Deployment's pods do): the ids on the volume still count as seen.
    with ThreadedSplitter(_state(tmp_path, "splitter-b")) as url:
        assert _post(url, "/events", _jsonl(BUY, {**CLICK, "event_id": "e3"})) == (200, {"accepted": 1,
                                                                                        "duplicates": 1})
    written = [json.loads(line) for f in sorted(tmp_path.glob("events-*.jsonl")) for line in f.read_text().splitlines()]
    assert sorted(e["event_id"] for e in written) == ["e1", "e2", "e3"]
    assert all(e["arm"] in ("champion", "challenger") and e["ts"] > 0 for e in written)

    # The client retries e1 and the Service routes it to the other replica, which never saw it (replicas share
    # no memory): it is written again, and the gate's reader counts it once.
    with ThreadedSplitter(replica) as url:
        assert _post(url, "/events", _jsonl(CLICK)) == (200, {"accepted": 1, "duplicates": 0})
    table, _ = fold_events(read_events(str(tmp_path)))
    row = table.user_ids.index("u1")
    assert (table.data["clicks"][row], table.data["conversions"][row], table.data["gtv"][row]) == (2.0, 1.0, 30.0)


@pytest.mark.parametrize(("body", "error"), [
    (_jsonl(CLICK, {**BUY, "event": "view"}), "line 2: event: 'view' is not one of click, conversion"),
    (_jsonl({**CLICK, "event_id": ""}), "line 1: event_id: required"),
    (_jsonl({k: v for k, v in CLICK.items() if k != "user_id"}), "line 1: user_id: required"),
    (_jsonl({**BUY, "value": "lots"}), "line 1: value: must be a finite number"),
    (_jsonl({**CLICK, "colour": "red"}), "line 1: unknown field(s) ['colour']"),
    (b'{"event_id": "e9", "event": "click"\n', "line 1: not JSON"),
    (b"\n\n", "body: no event"),
])
def test_a_bad_event_refuses_the_whole_body_naming_line_and_field(tmp_path: Path, body: bytes, error: str) -> None:
    with ThreadedSplitter(_state(tmp_path, "splitter-a")) as url:
        status, answer = _post(url, "/events", body)
        assert status == 400 and answer["error"].startswith(error), answer
        # Nothing of a refused body was written: the valid first line of it is still new.
        assert _post(url, "/events", _jsonl(CLICK)) == (200, {"accepted": 1, "duplicates": 0})


def test_events_are_off_without_an_event_log(tmp_path: Path) -> None:
    state = SplitterState(Router(two_arm()), FunctionBackend(lambda arm, q, items: [0.0] * len(items)))
    with ThreadedSplitter(state) as url:
        status, answer = _post(url, "/events", _jsonl(CLICK))
        assert status == 404 and "--events-log" in answer["error"]


def test_an_event_log_named_outside_the_pattern_re_reads_its_own_ids(tmp_path: Path) -> None:
    # `--events-log feedback.jsonl` does not match events*.jsonl: a restart must still know the ids it wrote.
    store = EventStore(tmp_path / "feedback.jsonl")
    assert store.add([CLICK, BUY], lambda user: "champion") == (2, 0)
    store.close()
    restarted = EventStore(tmp_path / "feedback.jsonl")
    assert restarted.add([CLICK, {**BUY, "event_id": "e3"}], lambda user: "champion") == (1, 1)
    restarted.close()
