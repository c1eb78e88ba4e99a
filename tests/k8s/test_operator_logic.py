"""The operator's pure logic: rendering, conditions, idempotent submission, the traffic state machine
and the gate analysis on event logs (no kopf, no API server)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from distillery.abtest.arms import split_from_dict
from distillery.operator import render, rollout
from distillery.operator.analysis import MetricsSourceError, analyse, fold_events
from distillery.operator.runs import ensure_submitted
from distillery.operator.settings import OperatorSettings
from distillery.operator.spec import SpecError, parse_distillation_run, parse_relevance_experiment
from distillery.operator.status import RunSnapshot, run_status, set_condition, stage_of, submitted_status

T0 = "2026-11-28T07:00:00.000Z"
RUN = {"data": {"source": "synthetic:500"}, "profile": "tiny", "output": {"uri": "s3://runs/x"}}
EXP = {"champion": {"model": "relevance", "version": 1}, "challenger": {"model": "relevance", "version": 2},
       "metricsSource": {"uri": "/logs"}, "traffic": {"steps": [10, 50, 100]}, "analysisIntervalSeconds": 60,
       "gate": {"minUsers": 100, "guardrailMetrics": []}}


def at(seconds: float) -> str:
    from datetime import datetime, timedelta

    t = datetime.fromisoformat(T0.replace("Z", "+00:00")) + timedelta(seconds=seconds)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- rendering ---------------------------------------------------------------------------------

def test_typed_fields_become_config_overrides_and_win() -> None:
    spec = parse_distillation_run({**RUN, "overrides": {"train.epochs": "9", "train.lr": "0.001"},
                                   "student": {"epochs": 2, "maxLength": 64}})
    assert render.overrides(spec) == ["student.max_length=64", "train.epochs=2", "train.lr=0.001"]
    cfg = render.pipeline_config(spec)
    assert (cfg["train"]["epochs"], cfg["train"]["lr"], cfg["student"]["max_length"]) == (2, 0.001, 64)
    args = render.pipeline_arguments(spec)
    assert args["data_spec"] == "synthetic:500" and json.loads(args["config_json"]) == cfg


def test_a_bad_override_names_spec_overrides() -> None:
    spec = parse_distillation_run({**RUN, "overrides": {"train.epochs": "-3"}})
    with pytest.raises(SpecError) as info:
        render.pipeline_config(spec)
    assert info.value.field == "spec.overrides" and "train.epochs" in str(info.value)


def test_run_name_is_stable_per_instance() -> None:
    assert render.run_name("ns", "r", "0123456789ab") == render.run_name("ns", "r", "0123456789ab") == "ns.r.01234567"
    assert render.run_name("ns", "r", "ffffffff-1") != render.run_name("ns", "r", "0123456789ab")


def test_splitter_configmap_is_a_valid_split_with_a_fixed_salt() -> None:
    exp = parse_relevance_experiment(EXP)
    docs = []
    for step in range(2):
        cm = render.splitter_configmap("ns", "e", "uid-1", exp, exp.champion, render.weights(exp, step, "Progressing"))
        docs.append(split_from_dict(json.loads(cm["data"][render.SPLIT_KEY]), "cm"))
        assert cm["metadata"]["name"] == "distillery-splitter" and cm["metadata"]["namespace"] == "ns"
    assert [d.weights for d in docs] == [{"champion": 90.0, "challenger": 10.0}, {"champion": 50.0, "challenger": 50.0}]
    assert docs[0].salt == docs[1].salt, "a salt change would reshuffle every user between steps"
    assert render.weights(exp, 1, "RolledBack") == {"champion": 100, "challenger": 0}


# --- status ----------------------------------------------------------------------------------

def test_condition_transition_time_moves_only_when_status_changes() -> None:
    c1 = set_condition([], "Succeeded", "Unknown", "Running", "a", T0)
    c2 = set_condition(c1, "Succeeded", "Unknown", "Running", "b", at(30))
    c3 = set_condition(c2, "Succeeded", "True", "Succeeded", "c", at(60))
    assert c2[0]["lastTransitionTime"] == T0 and c2[0]["message"] == "b"
    assert c3[0]["lastTransitionTime"] == at(60) and len(c3) == 1


def test_run_status_follows_stages_and_failures() -> None:
    old = submitted_status("r1", "ns.x.1", adopted=False, now=T0)
    snap = RunSnapshot("r1", "FAILED", {"Prepare data: split by query": "SUCCEEDED", "Annotate shard 0": "SUCCEEDED",
                                        "Annotate shard 1": "FAILED", "Distillation": "PENDING"}, error="OOMKilled")
    st = run_status(snap, old, at(10))
    conds = {c["type"]: c for c in st["conditions"]}
    assert st["phase"] == "Failed" and st["message"] == "OOMKilled"
    assert conds["Submitted"]["status"] == "True"
    assert conds["DataPrepared"]["status"] == "True"
    assert conds["Annotated"]["status"] == "False" and "Annotate shard 1" in conds["Annotated"]["message"]
    assert conds["StudentDistilled"]["reason"] == "InProgress"
    assert conds["Succeeded"]["status"] == "False"
    assert stage_of("Evaluate student on held-out queries") == "Evaluated"
    assert stage_of("Export ONNX") == "Exported" and stage_of("Teacher DPO") == "TeacherTrained"


# --- idempotent submission ---------------------------------------------------------------------

class FakeBackend:
    def __init__(self, existing: dict[str, str] | None = None) -> None:
        self.runs = dict(existing or {})
        self.submitted: list[tuple[str, Mapping[str, Any]]] = []

    def find_run(self, name: str) -> str | None:
        return self.runs.get(name)

    def submit(self, name: str, experiment: str, arguments: Mapping[str, Any], placement: Any = None) -> str:
        self.submitted.append((name, arguments))
        self.runs[name] = f"run-{len(self.runs)}"
        return self.runs[name]

    def get_run(self, run_id: str) -> RunSnapshot:
        return RunSnapshot(run_id, "RUNNING")


def test_submission_happens_once_even_if_the_status_was_lost() -> None:
    spec, b = parse_distillation_run(RUN), FakeBackend()
    assert ensure_submitted(b, spec, "ns.r.1", {}) == ("run-0", False)
    # Restarted with the status recorded: no lookup, no submission.
    assert ensure_submitted(b, spec, "ns.r.1", {"runId": "run-0"}) == ("run-0", True)
    # Restarted after dying between submit and the status patch: found by name.
    assert ensure_submitted(b, spec, "ns.r.1", {}) == ("run-0", True)
    assert len(b.submitted) == 1


# --- the traffic state machine -----------------------------------------------------------------

def test_promote_steps_through_the_plan_then_promotes() -> None:
    exp = parse_relevance_experiment(EXP)
    s = rollout.initial_state(exp, T0)
    assert not rollout.analysis_due(exp, s, at(59)) and rollout.analysis_due(exp, s, at(60))
    t = rollout.step(exp, s, "promote", "ctr better", at(60))
    assert (t.decision, t.state.step, t.state.step_started, t.event[1]) == ("advance", 1, at(60), "TrafficStepped")
    t = rollout.step(exp, t.state, "promote", "ctr better", at(120))
    assert (t.decision, t.state.phase, t.state.champion.version) == ("promote", "Promoted", 2)
    assert render.weights(exp, t.state.step, t.state.phase) == {"champion": 100, "challenger": 0}
    assert not rollout.analysis_due(exp, t.state, at(10_000))
    again = rollout.step(exp, t.state, "rollback", "late", at(200))
    assert again.state == t.state, "a finished experiment never changes"


def test_rollback_and_the_analysis_budget() -> None:
    exp = parse_relevance_experiment({**EXP, "gate": {"minUsers": 100, "maxAnalysesPerStep": 2}})
    s = rollout.initial_state(exp, T0)
    t = rollout.step(exp, s, "rollback", "ctr worse", at(60))
    assert (t.decision, t.state.phase, t.state.champion.version, t.event[0]) == ("rollback", "RolledBack", 1, "Warning")
    t1 = rollout.step(exp, s, "continue", "inconclusive", at(60))
    assert (t1.decision, t1.state.phase, t1.state.step_analyses) == ("continue", "Progressing", 1)
    t2 = rollout.step(exp, t1.state, "continue", "inconclusive", at(120))
    assert (t2.decision, t2.state.phase) == ("rollback", "RolledBack") and "2 analyses" in t2.event[2]


def test_state_survives_a_round_trip_through_status() -> None:
    exp = parse_relevance_experiment(EXP)
    t = rollout.step(exp, rollout.initial_state(exp, T0), "promote", "x", at(60))
    assert rollout.state_from_status(t.state.to_status(), exp, at(99)) == t.state
    assert rollout.state_from_status({}, exp, T0) == rollout.initial_state(exp, T0)


# --- the gate on event logs --------------------------------------------------------------------

def write_log(path: Path, n: dict[str, int], ctr: dict[str, float], ts: float, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with path.open("a") as f:
        for arm, users in n.items():
            for u in range(users):
                uid = f"{arm}-{seed}-{u}"
                f.write(json.dumps({"ts": ts, "user_id": uid, "arm": arm, "items": list("abcdefghij"),
                                    "latency_ms": 4.0, "fallback": False}) + "\n")
                for _ in range(int(rng.binomial(10, ctr[arm]))):
                    f.write(json.dumps({"ts": ts, "user_id": uid, "arm": arm, "event": "click"}) + "\n")


def test_fold_events_counts_users_and_respects_the_window(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    write_log(log, {"champion": 3, "challenger": 2}, {"champion": 0.5, "challenger": 0.5}, ts=100.0)
    write_log(log, {"champion": 4}, {"champion": 0.5}, ts=200.0, seed=1)
    events = [json.loads(x) for x in log.read_text().splitlines()]
    table, ops = fold_events(events)
    assert len(table) == 9 and ops["champion"].requests == 7
    assert sum(table.column("shown")) == 90
    table, _ = fold_events(events, since=150.0)
    assert len(table) == 4 and set(table.arms) == {"champion"}


@pytest.mark.parametrize(("ctr", "weights", "expected"), [
    ({"champion": 0.10, "challenger": 0.25}, {"champion": 90, "challenger": 10}, "promote"),
    ({"champion": 0.25, "challenger": 0.10}, {"champion": 90, "challenger": 10}, "rollback"),
    ({"champion": 0.10, "challenger": 0.10}, {"champion": 50, "challenger": 50}, "continue"),
])
def test_the_gate_decides_on_the_log(tmp_path: Path, ctr: dict[str, float], weights: dict[str, int],
                                      expected: str) -> None:
    exp = parse_relevance_experiment(EXP)
    n = {"champion": 15 * weights["champion"], "challenger": 15 * weights["challenger"]}
    write_log(tmp_path / "splitter-0.jsonl", n, ctr, ts=1e10)
    result = analyse(exp.gate, str(tmp_path), weights, T0)
    assert result.decision == expected, result.reason
    assert result.users == n and not result.blocked


def test_a_sample_ratio_mismatch_blocks_the_decision(tmp_path: Path) -> None:
    exp = parse_relevance_experiment(EXP)
    write_log(tmp_path / "s.jsonl", {"champion": 750, "challenger": 750}, {"champion": 0.1, "challenger": 0.3}, 1e10)
    result = analyse(exp.gate, str(tmp_path), {"champion": 90, "challenger": 10}, T0)
    assert result.blocked and result.decision == "continue" and "sample ratio mismatch" in result.reason


def test_a_missing_source_is_a_temporary_condition(tmp_path: Path) -> None:
    with pytest.raises(MetricsSourceError, match="does not exist"):
        analyse(parse_relevance_experiment(EXP).gate, str(tmp_path / "nope"), {"champion": 90, "challenger": 10}, T0)
    (tmp_path / "bad.jsonl").write_text('{"ts": 1}\nnot json\n')
    with pytest.raises(MetricsSourceError, match=r"bad\.jsonl:2"):
        analyse(parse_relevance_experiment(EXP).gate, str(tmp_path), {"champion": 90, "challenger": 10}, T0)


def test_settings_from_env() -> None:
    s = OperatorSettings.from_env({"KFP_HOST": "http://kfp:8888", "DISTILLERY_POLL_SECONDS": "5"})
    assert (s.kfp_host, s.poll_s, s.tick_s) == ("http://kfp:8888", 5.0, 15.0)
    with pytest.raises(ValueError, match="poll_s"):
        OperatorSettings.from_env({"DISTILLERY_POLL_SECONDS": "0"})


def test_spec_errors_name_the_field() -> None:
    cases = [
        ({**EXP, "traffic": {"steps": [100]}}, "spec.traffic.steps[0]"),
        ({**EXP, "gate": {"guardrailMetrics": ["revenue"]}}, "spec.gate.guardrailMetrics[0]"),
        ({**EXP, "challenger": {"model": "Bad Name", "version": 2}}, "spec.challenger.model"),
        ({**EXP, "metricsSource": {}}, "spec.metricsSource.uri"),
        ({**EXP, "analysisIntervalSeconds": True}, "spec.analysisIntervalSeconds"),
    ]
    for spec, field in cases:
        with pytest.raises(SpecError) as info:
            parse_relevance_experiment(spec)
        assert info.value.field == field, (spec, str(info.value))
    with pytest.raises(SpecError) as info:
        parse_distillation_run({**RUN, "overrides": {"train.epochs": 3}})
    assert info.value.field == "spec.overrides.train.epochs"


def test_final_metrics_flatten_the_report() -> None:
    from distillery.operator.results import final_metrics
    from distillery.operator.status import metrics_status

    doc = {"stages": {"student": {"macro_f1": 0.7, "n": 12, "ok": True, "name": "x"}, "teacher": None},
           "gate": {"deploy": True}}
    m = final_metrics(doc)
    assert m == {"student.macro_f1": 0.7, "student.n": 12.0, "macro_f1": 0.7}
    st = metrics_status({"conditions": []}, m, T0)
    assert st["metrics"]["macro_f1"] == 0.7 and st["conditions"][0]["status"] == "True"
    assert metrics_status({"conditions": []}, None, T0)["conditions"][0]["reason"] == "NotPublished"
