"""One analysis of a ``RelevanceExperiment``: read the splitter's event log, run the promotion gate.

The metrics source is a folder (or file, ``file://…``, ``s3://…`` prefix) of JSON Lines: the
splitter's exposure log (one record per served request: ``ts``, ``user_id``, ``arm``, ``items``,
``latency_ms``, ``fallback``; see ``distillery.abtest.splitter``) and the client's feedback events
(``"event": "click"`` / ``"conversion"`` with ``user_id``, ``arm``, ``ts`` and a conversion's
``value``, as :func:`distillery.abtest.simulator.observe` emits them). Events are folded into per-user
totals (:class:`UserTable`) and per-arm request counts and latencies (:class:`ArmOps`), then judged by
:class:`distillery.abtest.gate.Gate`.
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


@dataclass(frozen=True)
class Analysis:
    """The gate's verdict in the terms the experiment's status records."""

    decision: str
    reason: str
    users: dict[str, int] = field(default_factory=dict)
    lift: float | None = None
    p_value: float | None = None
    blocked: bool = False

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

    A user counts from their first impression in the window; NDCG needs graded items, which a
    production log lacks, so ``ndcg_sum`` stays 0 here."""
    users: dict[str, dict[str, float]] = {}
    arm_of: dict[str, str] = {}
    ops: dict[str, ArmOps] = {}
    for ev in events:
        if float(ev.get("ts", 0.0)) < since:
            continue
        uid, arm = str(ev["user_id"]), str(ev["arm"])
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
        elif uid in users and kind == "click":
            users[uid]["clicks"] += 1
        elif uid in users and kind == "conversion":
            users[uid]["conversions"] += 1
            users[uid]["gtv"] += float(ev.get("value", 0.0))
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


def analyse(gate: ABTestConfig, uri: str, weights: dict[str, int], since: str) -> Analysis:
    """Run the gate (``spec.gate`` as parsed: the one gate definition) on the users that arrived since
    ``since`` (ISO time) under ``weights``."""
    start = datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp()
    table, ops = fold_events(read_events(uri), start)
    if not all(a in {"champion", "challenger"} for a in table.arms):
        unknown = sorted(set(table.arms) - {"champion", "challenger"})
        raise MetricsSourceError(f"{uri}: events for unknown arms {unknown}")
    if len(table) == 0:
        return Analysis("continue", "no users since the step started", {"champion": 0, "challenger": 0})
    verdict = Gate(gate, "champion", {k: float(v) for k, v in weights.items()}).check(table, ops)
    test = verdict.tests.get("challenger", {}).get(gate.primary_metric, {})
    return Analysis(
        decision=verdict.decision,
        reason="; ".join(verdict.reasons) or verdict.decision,
        users=dict(verdict.users),
        lift=_finite(test.get("rel_lift")),
        p_value=_finite(test.get("p_always_valid")),
        blocked=verdict.blocked,
    )


def _finite(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and v == v and abs(v) != float("inf") else None
