"""Status and conditions of a ``DistillationRun``, computed from a snapshot of its KFP run.

Kubernetes conditions (``type``, ``status`` True/False/Unknown, ``reason``, ``message``,
``lastTransitionTime``): the transition time moves only when ``status`` changes, so a condition
polled every 30 s keeps the time it actually flipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

TERMINAL_PHASES = ("Succeeded", "Failed", "Invalid")
# KFP v2 run/task states → our phase.
_PHASE = {
    "PENDING": "Submitted", "RUNTIME_STATE_UNSPECIFIED": "Submitted",
    "RUNNING": "Running", "PAUSED": "Running", "CANCELING": "Running",
    "SUCCEEDED": "Succeeded", "SKIPPED": "Succeeded",
    "FAILED": "Failed", "CANCELED": "Failed",
}
# Pipeline stages, in order, and the words that put a task (by display name) into one of them.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("DataPrepared", ("prepare", "split")),
    ("TeacherTrained", ("teacher", "dapt", "sft", "reward", "dpo")),
    ("Annotated", ("annotat", "shard", "merge")),
    ("StudentDistilled", ("distil", "crsd", "student")),
    ("Evaluated", ("evaluat", "score", "report")),
    ("Exported", ("export", "onnx", "tensorrt", "publish", "deploy")),
)


@dataclass(frozen=True)
class RunSnapshot:
    """What the pipeline backend reports about one run."""

    run_id: str
    state: str
    tasks: Mapping[str, str] = field(default_factory=dict)
    """Display name → KFP state of each task seen so far."""
    error: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)


def set_condition(conditions: Sequence[Mapping[str, Any]], type_: str, status: str, reason: str,
                  message: str, now: str) -> list[dict[str, Any]]:
    """``conditions`` with ``type_`` set (added or replaced), order kept."""
    out: list[dict[str, Any]] = []
    new = {"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": now}
    found = False
    for c in conditions:
        if c.get("type") == type_:
            found = True
            if c.get("status") == status:
                new["lastTransitionTime"] = c.get("lastTransitionTime", now)
            out.append(new)
        else:
            out.append(dict(c))
    if not found:
        out.append(new)
    return out


# Matched most specific first: "Evaluate student" is an evaluation, not a distillation.
_MATCH_ORDER = ("Evaluated", "Exported", "Annotated", "TeacherTrained", "DataPrepared", "StudentDistilled")


def stage_of(task: str) -> str | None:
    """The stage a task belongs to, by its display name."""
    low = task.lower()
    words_of = dict(STAGES)
    for stage in _MATCH_ORDER:
        words = words_of[stage]
        if any(w in low for w in words):
            return stage
    return None


def stage_conditions(tasks: Mapping[str, str]) -> dict[str, tuple[str, str, str]]:
    """Stage → (status, reason, message) from the tasks' states; stages with no task seen are Unknown."""
    grouped: dict[str, list[tuple[str, str]]] = {stage: [] for stage, _ in STAGES}
    for task, state in sorted(tasks.items()):
        stage = stage_of(task)
        if stage is not None:
            grouped[stage].append((task, state))
    out: dict[str, tuple[str, str, str]] = {}
    for stage, items in grouped.items():
        failed = [t for t, s in items if _PHASE.get(s) == "Failed"]
        done = [t for t, s in items if _PHASE.get(s) == "Succeeded"]
        if failed:
            out[stage] = ("False", "TaskFailed", f"failed: {', '.join(failed)}")
        elif items and len(done) == len(items):
            out[stage] = ("True", "Succeeded", f"{len(done)} task(s) succeeded")
        elif items:
            out[stage] = ("Unknown", "InProgress", f"{len(done)}/{len(items)} task(s) done")
        else:
            out[stage] = ("Unknown", "NotStarted", "no task yet")
    return out


def run_status(snap: RunSnapshot, old: Mapping[str, Any], now: str) -> dict[str, Any]:
    """The ``status`` patch for a run in state ``snap``, given the current ``status`` ``old``."""
    phase = _PHASE.get(snap.state.upper(), "Running")
    conds: list[dict[str, Any]] = list(old.get("conditions") or [])
    for stage, (status, reason, message) in stage_conditions(snap.tasks).items():
        conds = set_condition(conds, stage, status, reason, message, now)
    ok = {"Succeeded": "True", "Failed": "False"}.get(phase, "Unknown")
    message = snap.error or f"KFP run {snap.run_id} is {snap.state.lower()}"
    conds = set_condition(conds, "Succeeded", ok, phase, message, now)
    patch: dict[str, Any] = {"phase": phase, "runId": snap.run_id, "conditions": conds, "message": message}
    if snap.metrics:
        patch["metrics"] = {k: float(v) for k, v in sorted(snap.metrics.items())}
    return patch


def metrics_status(new: Mapping[str, Any], metrics: Mapping[str, float] | None, now: str) -> dict[str, Any]:
    """``new`` with the final metrics and a ``MetricsReported`` condition (False when none were published)."""
    out = dict(new)
    if metrics:
        out["metrics"] = dict(sorted(metrics.items()))
        out["conditions"] = set_condition(out["conditions"], "MetricsReported", "True", "Published",
                                          f"{len(metrics)} metric(s) from the run's report", now)
    else:
        out["conditions"] = set_condition(out["conditions"], "MetricsReported", "False", "NotPublished",
                                          "the run published no report/metrics.json under spec.output.uri", now)
    return out


def submitted_status(run_id: str, name: str, adopted: bool, now: str) -> dict[str, Any]:
    """The ``status`` right after the run was submitted (or found, after an operator restart)."""
    how = "found the run submitted earlier" if adopted else "submitted"
    conds = set_condition([], "Submitted", "True", "Adopted" if adopted else "Submitted",
                          f"{how}: KFP run {run_id} ({name})", now)
    return {"phase": "Submitted", "runId": run_id, "runName": name, "submittedAt": now,
            "conditions": conds, "message": f"{how}: KFP run {run_id}"}


def invalid_status(message: str, now: str) -> dict[str, Any]:
    conds = set_condition([], "Valid", "False", "InvalidSpec", message, now)
    return {"phase": "Invalid", "message": message, "conditions": conds}
