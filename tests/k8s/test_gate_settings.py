"""One definition of the gate's settings: a ``RelevanceExperiment``'s ``spec.gate`` maps onto
:class:`distillery.config.ABTestConfig` (what ``distillery abtest`` and the pipeline's A/B step use), with the
CRD's defaults equal to its defaults, every field accounted for, and unknown fields rejected by name."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from distillery.abtest.gate import Gate
from distillery.config import ABTestConfig
from distillery.operator.spec import (
    GATE_FIELDS,
    NOT_IN_CRD,
    ROLLOUT_GATE_FIELDS,
    SpecError,
    parse_relevance_experiment,
)
from tests.k8s.conftest import crd_schemas

EXP = {"champion": {"model": "relevance", "version": 1}, "challenger": {"model": "relevance", "version": 2},
       "metricsSource": {"uri": "/logs"}}
# A value off the default for every field the CRD exposes.
OFF_DEFAULT = {"primaryMetric": "ndcg", "alpha": 0.01, "minUsers": 250, "guardrailMetrics": ["cvr", "ctr"],
               "maxLatencyRatio": 2.5, "maxErrorRate": 0.05}


def gate_schema() -> dict[str, Any]:
    return dict(crd_schemas()["RelevanceExperiment"]["properties"]["spec"]["properties"]["gate"]["properties"])


def test_every_gate_field_is_mapped_from_the_crd_or_listed_as_not_in_it() -> None:
    names = {f.name for f in dataclasses.fields(ABTestConfig)}
    mapped = set(GATE_FIELDS.values())
    assert mapped <= names and set(NOT_IN_CRD) <= names
    assert not mapped & set(NOT_IN_CRD), "a field is both mapped and listed as not in the CRD"
    assert mapped | set(NOT_IN_CRD) == names, f"unaccounted ABTestConfig fields: {names - mapped - set(NOT_IN_CRD)}"
    # The CRD's spec.gate is exactly the mapped fields plus the rollout's own.
    assert set(gate_schema()) == set(GATE_FIELDS) | set(ROLLOUT_GATE_FIELDS)


def test_crd_defaults_are_the_gate_defaults() -> None:
    defaults = ABTestConfig()
    for key, name in GATE_FIELDS.items():
        assert gate_schema()[key]["default"] == getattr(defaults, name), key
    assert parse_relevance_experiment(EXP).gate == defaults


def test_every_crd_field_reaches_the_one_gate_definition() -> None:
    assert set(OFF_DEFAULT) == set(GATE_FIELDS)
    exp = parse_relevance_experiment({**EXP, "gate": {**OFF_DEFAULT, "maxAnalysesPerStep": 7}})
    assert type(exp.gate) is ABTestConfig and exp.max_analyses_per_step == 7
    defaults = ABTestConfig()
    for key, name in GATE_FIELDS.items():
        assert getattr(exp.gate, name) == OFF_DEFAULT[key] != getattr(defaults, name), key
    for name in NOT_IN_CRD:
        assert getattr(exp.gate, name) == getattr(defaults, name), name
    # ... and the gate the operator builds from it judges with those settings.
    gate = Gate(exp.gate, "champion", {"champion": 90.0, "challenger": 10.0})
    assert gate.metrics == ["ndcg", "cvr", "ctr"] and gate.alpha == 0.01


@pytest.mark.parametrize(("gate", "field"), [
    ({"minUser": 100}, "spec.gate.minUser"),                       # unknown (a typo) is rejected, not ignored
    ({"tauRel": 0.1}, "spec.gate.tauRel"),                         # not in the v1alpha1 CRD
    ({"minUsers": 1}, "spec.gate.minUsers"),                       # ABTestConfig's own range check
    ({"maxLatencyRatio": 0.5}, "spec.gate.maxLatencyRatio"),
    ({"alpha": True}, "spec.gate.alpha"),
    ({"primaryMetric": "revenue"}, "spec.gate.primaryMetric"),
    ({"guardrailMetrics": ["ctr", "clicks"]}, "spec.gate.guardrailMetrics[1]"),
    ({"maxAnalysesPerStep": -1}, "spec.gate.maxAnalysesPerStep"),
])
def test_a_bad_gate_field_is_named(gate: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_relevance_experiment({**EXP, "gate": gate}, "RelevanceExperiment ns/x")
    assert info.value.field == field
    assert str(info.value).startswith(f"RelevanceExperiment ns/x: {field}: ")
