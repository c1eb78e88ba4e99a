"""Click and conversion events from clients: parsed, de-duplicated by event id and appended where the gate reads.

The splitter's ``POST /events`` takes a JSON Lines body, one event per line::

    {"event_id": "e-81f3", "event": "click", "user_id": "u42", "request_id": "…", "item_id": "sku-1", "ts": 1.7e9}
    {"event_id": "e-81f4", "event": "conversion", "user_id": "u42", "item_id": "sku-1", "value": 35.5}

``event_id`` is the client's idempotency key: an event whose id was already accepted is acknowledged as a
duplicate and not written again, also after a splitter restart (ids are re-read from the event logs on
start). Replicas behind one Service do not share their memory, so the gate's reader
(:func:`distillery.operator.analysis.fold_events`) de-duplicates by ``event_id`` too: that is the guarantee,
this store keeps the files small and tells the client what happened.

    store = EventStore("/var/log/splitter/events-splitter-0.jsonl")
    events = parse_events(body, max_events=10_000)      # BadEvents names the line and field
    accepted, duplicates = store.add(events, arm_of=lambda uid: router.assign(uid).name)

Events go to the same volume as the exposure logs (``metricsSource.uri`` of the experiment): the analysis
already reads that folder, appends of whole lines are atomic there, and no S3 call sits on the request path.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distillery.abtest.exposure import ExposureLog

log = logging.getLogger("distillery.splitter.events")
FEEDBACK_KINDS = ("click", "conversion")
OPTIONAL_TEXT = ("request_id", "item_id")
KNOWN_FIELDS = {"event_id", "event", "user_id", "ts", "value", *OPTIONAL_TEXT}
MAX_ID_CHARS = 256


class BadEvents(ValueError):
    """A body the events endpoint refuses; the message names the line and the field."""


def _text(ev: dict[str, Any], key: str, where: str, required: bool) -> str | None:
    value = ev.get(key)
    if value is None and not required:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS:
        raise BadEvents(f"{where}: {key}: required, a non-empty string of at most {MAX_ID_CHARS} characters"
                        if required else f"{where}: {key}: must be a non-empty string")
    return value


def _number(ev: dict[str, Any], key: str, where: str, default: float) -> float:
    value = ev.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadEvents(f"{where}: {key}: must be a finite number, got {value!r}")
    return float(value)


def parse_event(line: str, where: str, now: float) -> dict[str, Any]:
    """One validated event record as it is written (``ts`` defaults to the time it was received)."""
    try:
        ev = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadEvents(f"{where}: not JSON ({exc.msg})") from None
    if not isinstance(ev, dict):
        raise BadEvents(f"{where}: must be a JSON object")
    unknown = sorted(set(ev) - KNOWN_FIELDS)
    if unknown:
        raise BadEvents(f"{where}: unknown field(s) {unknown} (known: {sorted(KNOWN_FIELDS)})")
    kind = ev.get("event")
    if kind not in FEEDBACK_KINDS:
        raise BadEvents(f"{where}: event: {kind!r} is not one of {', '.join(FEEDBACK_KINDS)}")
    out: dict[str, Any] = {"ts": _number(ev, "ts", where, now), "event_id": _text(ev, "event_id", where, True),
                           "event": kind, "user_id": _text(ev, "user_id", where, True)}
    for key in OPTIONAL_TEXT:
        if (value := _text(ev, key, where, False)) is not None:
            out[key] = value
    if kind == "conversion":
        out["value"] = _number(ev, "value", where, 0.0)
        if out["value"] < 0:
            raise BadEvents(f"{where}: value: {out['value']} must be non-negative (order value)")
    return out


def parse_events(body: bytes, max_events: int) -> list[dict[str, Any]]:
    """Every event of a JSON Lines body (blank lines skipped); the whole body is refused on the first bad line."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadEvents(f"body: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    now = time.time()
    events = [parse_event(line, f"line {n}", now) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not events:
        raise BadEvents("body: no event (one JSON object per line)")
    if len(events) > max_events:
        raise BadEvents(f"body: {len(events)} events > limit {max_events}")
    return events


def seen_ids(path: Path, pattern: str) -> set[str]:
    """Event ids already written to ``path`` and to the logs matching ``pattern`` beside it (a torn last line is
    skipped).  ``path`` itself always counts: a log named outside the pattern must still re-read its own ids."""
    ids: set[str] = set()
    files = set(path.parent.glob(pattern)) | ({path} if path.is_file() else set())
    for f in sorted(files):
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            try:
                ids.add(str(json.loads(line)["event_id"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                log.warning("%s:%d: not an event record, ignored for de-duplication", f, n)
    return ids


class EventStore:
    """Appends accepted events to a JSONL file; ``None`` path turns the endpoint off.

    ``pattern`` names the sibling logs whose ids count as seen: every replica's (and every earlier pod's)
    event log on the shared volume, so a restarted pod under a new name still knows the ids.
    """

    def __init__(self, path: str | Path | None, pattern: str = "events*.jsonl") -> None:
        self.path = Path(path) if path else None
        self._log = ExposureLog(self.path)
        self._seen = seen_ids(self.path, pattern) if self.path is not None else set()
        if self.path is not None:
            log.info("event log %s: %d event ids already recorded", self.path, len(self._seen))

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def add(self, events: list[dict[str, Any]], arm_of: Callable[[str], str]) -> tuple[int, int]:
        """Write the events not seen before (each with the user's arm); returns (accepted, duplicates).

        Synchronous on purpose: the splitter calls it on its event loop, so the check and the insert of an
        id cannot interleave with another request's."""
        accepted = 0
        for ev in events:
            if ev["event_id"] in self._seen:
                continue
            self._log.write({**ev, "arm": arm_of(ev["user_id"])})
            self._seen.add(ev["event_id"])
            accepted += 1
        return accepted, len(events) - accepted

    def close(self) -> None:
        self._log.close()
