"""One analysis of a ``RelevanceExperiment``: read the splitter's event log, run the promotion gate.

The metrics source is a folder (or file, ``file://…``, ``s3://…`` prefix) of JSON Lines: the
splitter's exposure log (one record per served request: ``ts``, ``user_id``, ``arm``, ``items``,
``latency_ms``, ``fallback``; see ``distillery.abtest.splitter``) and the feedback events the splitter's
``POST /events`` collects beside it (``"event": "click"`` / ``"conversion"`` with ``event_id``, ``user_id``,
``ts`` and a conversion's ``value``; see ``distillery.abtest.events``). Events are folded into per-user
totals (:class:`UserTable`) and per-arm request counts and latencies (:class:`ArmOps`), an event id seen
twice counting once, then judged by :class:`distillery.abtest.gate.Gate`.

The gate's running state is carried from look to look (``status.gate`` of the experiment, see
:func:`analyse`), so the sequential test survives between analyses and operator restarts; it restarts
with each traffic step, whose users form a new sample.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from distillery.abtest.gate import ArmOps, Gate
from distillery.abtest.metrics import USER_FIELDS, UserTable
from distillery.config import ABTestConfig


class MetricsSourceError(RuntimeError):
    """The metrics source cannot be read (yet): the operator retries later."""


class GateStateError(ValueError):
    """The gate state recorded in the status cannot be continued (malformed, or another alpha)."""


@dataclass(frozen=True)
class Analysis:
    """The gate's verdict in the terms the experiment's status records."""

    decision: str
    reason: str
    users: dict[str, int] = field(default_factory=dict)
    lift: float | None = None
    p_value: float | None = None
    blocked: bool = False
    gate_state: dict[str, Any] = field(default_factory=dict)
    """The gate's running state after this look, for ``status.gate`` (see :func:`gate_state_for`)."""

    def to_status(self, now: str) -> dict[str, Any]:
        out: dict[str, Any] = {"time": now, "decision": self.decision, "reason": self.reason,
                               "usersChampion": self.users.get("champion", 0),
                               "usersChallenger": self.users.get("challenger", 0), "blocked": self.blocked}
        if self.lift is not None:
            out["lift"] = self.lift
        if self.p_value is not None:
            out["pValue"] = self.p_value
        return out


def fold_events(events: Iterable[dict[str, Any]], since: float = 0.0) -> tuple[UserTable, dict[str, ArmOps]]:
    """Per-user totals and per-arm operations from events at or after ``since`` (epoch seconds).

    A user counts from their first impression in the window, whichever file or order the events come in
    (event logs sort before exposure logs in a folder); an ``event_id`` seen twice counts once. NDCG needs
    graded items, which a production log lacks, so ``ndcg_sum`` stays 0 here."""
    users: dict[str, dict[str, float]] = {}
    arm_of: dict[str, str] = {}
    ops: dict[str, ArmOps] = {}
    seen: set[str] = set()
    feedback: list[tuple[str, str, float]] = []
    for ev in events:
        if float(ev.get("ts", 0.0)) < since:
            continue
        if "event_id" in ev:  # replayed to another replica (or before a restart): count it once
            if ev["event_id"] in seen:
                continue
            seen.add(ev["event_id"])
        uid, arm = str(ev["user_id"]), str(ev.get("arm", ""))
        # The splitter's exposure records carry no "event": each is one served request (an impression).
        kind = ev.get("event", "impression" if "items" in ev else None)
        if kind == "impression":
            row = users.setdefault(uid, dict.fromkeys(USER_FIELDS, 0.0))
            arm_of.setdefault(uid, arm)
            row["sessions"] += 1
            row["shown"] += len(ev.get("items", ()))
            # A failover (another arm served the request) counts against the arm, as the gate expects.
            failed = bool(ev.get("failed", False) or ev.get("fallback", False))
            ops.setdefault(arm, ArmOps()).add(float(ev.get("latency_ms", 0.0)), failed)
        elif kind in ("click", "conversion"):
            feedback.append((uid, kind, float(ev.get("value", 0.0))))
    for uid, kind, value in feedback:  # after every impression: a click may be read before its exposure
        if uid in users and kind == "click":
            users[uid]["clicks"] += 1
        elif uid in users:
            users[uid]["conversions"] += 1
            users[uid]["gtv"] += value
    table = UserTable()
    for uid, row in users.items():
        table.user_ids.append(uid)
        table.arms.append(arm_of[uid])
        for f in USER_FIELDS:
            table.data[f].append(row[f])
    return table, ops


def read_events(uri: str) -> Iterator[dict[str, Any]]:
    """Every event of a JSON Lines log: a file, a folder or an ``s3://`` prefix of ``*.jsonl``."""
    if uri.startswith("s3://"):
        from distillery.storage import StorageError, fetch

        with tempfile.TemporaryDirectory() as tmp:
            try:
                local = fetch(uri, tmp)
            except StorageError as exc:
                raise MetricsSourceError(str(exc)) from exc
            yield from read_events(str(local))
        return
    path = Path(uri.removeprefix("file://"))
    if not path.exists():
        raise MetricsSourceError(f"{uri}: the metrics source does not exist (yet)")
    files = sorted(path.rglob("*.jsonl")) if path.is_dir() else [path]
    for f in files:
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise MetricsSourceError(f"{f}:{n}: not JSON ({exc.msg})") from exc


def gate_state_for(recorded: Any, since: str) -> dict[str, Any] | None:
    """The recorded ``status.gate`` if it belongs to the step that started at ``since``, else None (a new test)."""
    if isinstance(recorded, dict) and recorded.get("since") == since:
        return {k: v for k, v in recorded.items() if k != "since"}
    return None


def analyse(gate: ABTestConfig, uri: str, weights: dict[str, int], since: str,
            recorded: Any = None) -> Analysis:
    """Run the gate (``spec.gate`` as parsed: the one gate definition) on the users that arrived since
    ``since`` (ISO time) under ``weights``, continuing the sequential test of ``recorded`` (the status's
    ``gate``) when it belongs to this step. A malformed record is a :class:`GateStateError`."""
    start = datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp()
    previous = gate_state_for(recorded, since)
    table, ops = fold_events(read_events(uri), start)
    if not all(a in {"champion", "challenger"} for a in table.arms):
        unknown = sorted(set(table.arms) - {"champion", "challenger"})
        raise MetricsSourceError(f"{uri}: events for unknown arms {unknown}")
    if len(table) == 0:
        return Analysis("continue", "no users since the step started", {"champion": 0, "challenger": 0},
                        gate_state=recorded if previous is not None else {})
    try:
        judge = Gate(gate, "champion", {k: float(v) for k, v in weights.items()}, state=previous)
    except ValueError as exc:
        raise GateStateError(f"status.gate: {exc}") from exc
    verdict = judge.check(table, ops)
    test = verdict.tests.get("challenger", {}).get(gate.primary_metric, {})
    return Analysis(
        decision=verdict.decision,
        reason="; ".join(verdict.reasons) or verdict.decision,
        users=dict(verdict.users),
        lift=_finite(test.get("rel_lift")),
        p_value=_finite(test.get("p_always_valid")),
        blocked=verdict.blocked,
        gate_state=_as_patch({**judge.state(), "since": since}, recorded),
    )


def _as_patch(new: dict[str, Any], recorded: Any) -> dict[str, Any]:
    """``new`` with a null for every test ``recorded`` holds and ``new`` lacks: the status is written with a
    JSON merge patch, where a missing key would keep an earlier step's p-value alive."""
    old = recorded.get("tests") if isinstance(recorded, dict) else None
    tests: dict[str, Any] = {c: dict(rows) for c, rows in new["tests"].items()}
    for c, rows in (old if isinstance(old, dict) else {}).items():
        if c not in tests:
            tests[c] = None
        elif isinstance(rows, dict):
            tests[c].update({m: None for m in rows if m not in tests[c]})
    return {**new, "tests": tests}


def _finite(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and v == v and abs(v) != float("inf") else None
