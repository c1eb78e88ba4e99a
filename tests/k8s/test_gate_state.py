"""The gate's sequential test survives between analyses and operator restarts: each look runs in a fresh
``analyse`` call (what a new handler instance, or a restarted operator, does) given only the CR status written
by the previous look, after a JSON round trip; it must continue exactly where one long-lived gate would be."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from distillery.abtest.gate import Gate
from distillery.operator.analysis import GateStateError, analyse, fold_events, read_events
from distillery.operator.spec import parse_relevance_experiment

T0 = "2026-11-28T07:00:00.000Z"
T1 = "2026-11-28T08:00:00.000Z"
WEIGHTS = {"champion": 50, "challenger": 50}
EXP = {"champion": {"model": "relevance", "version": 1}, "challenger": {"model": "relevance", "version": 2},
       "metricsSource": {"uri": "/logs"}, "gate": {"minUsers": 100, "guardrailMetrics": ["cvr"], "alpha": 0.05}}


def add_users(log: Path, users: int, ctr: dict[str, float], seed: int) -> None:
    """``users`` per arm: one exposure of 10 items each, binomial clicks, a conversion now and then."""
    rng = np.random.default_rng(seed)
    with log.open("a") as f:
        for arm, p in ctr.items():
            for u in range(users):
                uid = f"{seed}-{arm}-{u}"
                f.write(json.dumps({"ts": 1e10, "user_id": uid, "arm": arm, "items": [f"i{k}" for k in range(10)],
                                    "latency_ms": 4.0, "fallback": False}) + "\n")
                for k in range(int(rng.binomial(10, p))):
                    f.write(json.dumps({"ts": 1e10, "event_id": f"{uid}-c{k}", "user_id": uid,
                                        "event": "click"}) + "\n")
                if rng.random() < 0.2:
                    f.write(json.dumps({"ts": 1e10, "event_id": f"{uid}-o", "user_id": uid, "event": "conversion",
                                        "value": 20.0}) + "\n")


def restart(status: dict[str, Any]) -> dict[str, Any]:
    """The status as a restarted operator reads it back from the API server."""
    return json.loads(json.dumps(status))


# Look 1: a clear early lead for the challenger; looks 2 and 3: many users with no difference dilute it.
LOOKS = [(300, {"champion": 0.10, "challenger": 0.16}), (900, {"champion": 0.12, "challenger": 0.12}),
         (900, {"champion": 0.12, "challenger": 0.12})]


def test_the_sequential_test_continues_across_fresh_analyses(tmp_path: Path) -> None:
    gate_cfg = parse_relevance_experiment(EXP).gate
    log = tmp_path / "splitter-0.jsonl"
    one_gate = Gate(gate_cfg, "champion", {k: float(v) for k, v in WEIGHTS.items()})
    status: dict[str, Any] = {}
    for i, (users, ctr) in enumerate(LOOKS, 1):
        add_users(log, users, ctr, seed=i)
        result = analyse(gate_cfg, str(tmp_path), WEIGHTS, T0, restart(status).get("gate"))
        status["gate"] = result.gate_state
        # The same look by one gate that lived through all of them.
        reference = one_gate.check(*fold_events(read_events(str(tmp_path))))
        assert result.p_value == pytest.approx(reference.tests["challenger"]["ctr"]["p_always_valid"], rel=1e-12)
        assert status["gate"]["looks"] == i and status["gate"]["since"] == T0
    ctr = status["gate"]["tests"]["challenger"]["ctr"]
    assert ctr["tau2"] == one_gate.state()["tests"]["challenger"]["ctr"]["tau2"]
    assert set(status["gate"]["tests"]["challenger"]) == {"ctr", "cvr"}
    assert ctr["nChampion"] == ctr["nChallenger"] == sum(u for u, _ in LOOKS)
    # What the old operator did, a new gate per look, forgets look 1's evidence: its p-value is larger.
    forgetful = analyse(gate_cfg, str(tmp_path), WEIGHTS, T0)
    assert forgetful.p_value is not None and result.p_value is not None
    assert result.p_value < forgetful.p_value, (result.p_value, forgetful.p_value)
    assert forgetful.gate_state["looks"] == 1


def test_a_new_step_starts_a_new_test_and_a_foreign_state_is_refused(tmp_path: Path) -> None:
    gate_cfg = parse_relevance_experiment(EXP).gate
    add_users(tmp_path / "s.jsonl", 300, LOOKS[0][1], seed=1)
    first = analyse(gate_cfg, str(tmp_path), WEIGHTS, T0)
    # The next traffic step (another start time) judges its own users: the old record is not continued...
    stepped = analyse(gate_cfg, str(tmp_path), WEIGHTS, T1, restart({"gate": first.gate_state})["gate"])
    assert stepped.gate_state["looks"] == 1 and stepped.gate_state["since"] == T1
    # ...and a test the old record holds that this one does not run is deleted by the merge patch (null).
    stale = restart({"gate": first.gate_state})["gate"]
    stale["tests"]["challenger"]["gtv"] = {"tau2": 1.0, "pMin": 1e-9}
    for since, looks in ((T1, 1), (T0, 2)):
        patched = analyse(gate_cfg, str(tmp_path), WEIGHTS, since, stale).gate_state
        assert patched["tests"]["challenger"]["gtv"] is None and patched["looks"] == looks
    # A record made under another alpha cannot be continued: an error naming status.gate.
    other = parse_relevance_experiment({**EXP, "gate": {**EXP["gate"], "alpha": 0.01}}).gate
    with pytest.raises(GateStateError, match=r"status\.gate: gate state: alpha 0\.05"):
        analyse(other, str(tmp_path), WEIGHTS, T0, first.gate_state)
    broken = restart({"gate": first.gate_state})["gate"]
    broken["tests"]["challenger"]["ctr"]["tau2"] = "wide"
    with pytest.raises(GateStateError, match=r"tests\.challenger\.ctr: tau2 and pMin must be numbers"):
        analyse(gate_cfg, str(tmp_path), WEIGHTS, T0, broken)
