"""The traffic-stepping state machine of a ``RelevanceExperiment``.

States: ``Progressing`` at step *i* of ``spec.traffic.steps`` (the challenger gets ``steps[i]`` %),
then ``Promoted`` or ``RolledBack`` (terminal). Each analysis feeds the gate's decision in:

=============  ===================================================================================
gate says      transition
=============  ===================================================================================
``promote``    the next step if it leaves the champion traffic (< 100 %); else **promote**: the
               champion becomes the challenger's version with all the traffic (the handler rewrites the
               model repository's champion first, :mod:`distillery.export.champion`)
``rollback``   **roll back**: challenger weight 0, champion unchanged, the reason in the ``RolledBack``
               condition, ``message`` and a Warning Event
``continue``   stay; after ``gate.maxAnalysesPerStep`` analyses at one step (if set), roll back
=============  ===================================================================================

Each step is judged on the users that arrived since it started (``step_started``), so that the
gate's sample-ratio check compares users against the weights they were actually assigned under.
The state lives in the CR's ``status`` only, so an operator restart resumes where it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from distillery.operator.spec import Arm, RelevanceExperimentSpec
from distillery.operator.status import set_condition

TERMINAL = ("Promoted", "RolledBack", "Invalid")


@dataclass(frozen=True)
class RolloutState:
    phase: str
    step: int
    champion: Arm
    step_started: str
    analyses: int = 0
    step_analyses: int = 0
    last_analysis: str | None = None

    def to_status(self) -> dict[str, Any]:
        return {"phase": self.phase, "step": self.step, "stepStarted": self.step_started,
                "champion": {"model": self.champion.model, "version": self.champion.version},
                "analyses": self.analyses, "stepAnalyses": self.step_analyses, "lastAnalysis": self.last_analysis}


@dataclass(frozen=True)
class Transition:
    """The new state, the decision recorded in status, and a Kubernetes Event (type, reason, message)."""

    state: RolloutState
    decision: str
    event: tuple[str, str, str]
    cause: str = ""
    """Why a terminal transition happened, as a condition reason (``GateRollback``, ``NoDecision``, ``GatePromote``)."""

    def conditions(self, old: list[dict[str, Any]], now: str) -> list[dict[str, Any]]:
        """``old`` conditions with this transition's outcome recorded: ``Promoted`` / ``RolledBack`` set
        (True, the cause and the full reason) once the experiment ends; unchanged otherwise."""
        if self.decision == "rollback":
            return set_condition(old, "RolledBack", "True", self.cause, self.event[2], now)
        if self.decision == "promote":
            return set_condition(old, "Promoted", "True", self.cause, self.event[2], now)
        return list(old)


def initial_state(spec: RelevanceExperimentSpec, now: str) -> RolloutState:
    return RolloutState(phase="Progressing", step=0, champion=spec.champion, step_started=now)


def state_from_status(status: Mapping[str, Any], spec: RelevanceExperimentSpec, now: str) -> RolloutState:
    """The state recorded in ``status`` (an empty status is the initial state)."""
    if not status.get("phase"):
        return initial_state(spec, now)
    champ = status.get("champion") or {}
    return RolloutState(
        phase=str(status["phase"]),
        step=min(int(status.get("step", 0)), len(spec.steps) - 1),
        champion=Arm(str(champ.get("model", spec.champion.model)), int(champ.get("version", spec.champion.version))),
        step_started=str(status.get("stepStarted") or now),
        analyses=int(status.get("analyses", 0)),
        step_analyses=int(status.get("stepAnalyses", 0)),
        last_analysis=status.get("lastAnalysis"),
    )


def analysis_due(spec: RelevanceExperimentSpec, state: RolloutState, now: str) -> bool:
    """True when the experiment is running and ``analysisIntervalSeconds`` passed since the last look
    (or since the step started, before the first look)."""
    if state.phase in TERMINAL:
        return False
    since = state.last_analysis or state.step_started
    return (_t(now) - _t(since)).total_seconds() >= spec.interval_s


def step(spec: RelevanceExperimentSpec, state: RolloutState, decision: str, reason: str, now: str) -> Transition:
    """Apply one gate decision (``promote`` | ``rollback`` | ``continue``) at time ``now``."""
    if state.phase in TERMINAL:
        return Transition(state, "continue", ("Normal", "Finished", f"experiment already {state.phase}"))
    looked = replace(state, analyses=state.analyses + 1, step_analyses=state.step_analyses + 1, last_analysis=now)
    ch = spec.challenger
    if decision == "rollback":
        return _rollback(looked, f"gate: {reason}", "GateRollback")
    if decision == "promote":
        nxt = state.step + 1
        if nxt < len(spec.steps) and spec.steps[nxt] < 100:
            moved = replace(looked, step=nxt, step_started=now, step_analyses=0)
            return Transition(moved, "advance", ("Normal", "TrafficStepped",
                              f"challenger {ch.model} v{ch.version}: {spec.steps[state.step]}% → {spec.steps[nxt]}% "
                              f"({reason})"))
        promoted = replace(looked, phase="Promoted", champion=ch)
        return Transition(promoted, "promote", ("Normal", "Promoted",
                          f"{ch.model} v{ch.version} is the champion now ({reason})"), "GatePromote")
    limit = spec.max_analyses_per_step
    if limit and looked.step_analyses >= limit:
        return _rollback(looked, f"no decision after {limit} analyses at {spec.steps[state.step]}% ({reason})",
                         "NoDecision")
    return Transition(looked, "continue", ("Normal", "Analysed", reason))


def _rollback(state: RolloutState, why: str, cause: str) -> Transition:
    """All traffic back to the champion, which stays; ``why`` goes into the Event, message and condition."""
    return Transition(replace(state, phase="RolledBack"), "rollback",
                      ("Warning", "RolledBack", f"all traffic back on the champion: {why}"), cause)


def _t(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
