"""Sample CRs (valid and deliberately invalid) against the CRDs' openAPIV3Schema with jsonschema, and
against the operator's own validation: both must name the same field; both must default alike."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest
import yaml

from distillery.operator import render
from distillery.operator.spec import SpecError, parse_distillation_run, parse_relevance_experiment
from tests.k8s.conftest import EXPECT, MANIFESTS, SAMPLES, SCHEMA_VALID, crd_schemas, load_samples

PARSERS = {"DistillationRun": parse_distillation_run, "RelevanceExperiment": parse_relevance_experiment}
VALID = load_samples(SAMPLES)
INVALID = load_samples(SAMPLES / "invalid")


def schema_errors(obj: dict[str, Any]) -> list[str]:
    """JSON paths of the schema violations, in the operator's notation (``spec.traffic.steps[1]``)."""
    # OpenAPI v3.0 schemas use draft-4 semantics (boolean exclusiveMinimum).
    validator = jsonschema.Draft4Validator(crd_schemas()[obj["kind"]])
    paths = []
    for err in validator.iter_errors(obj):
        parts = list(err.absolute_path)
        if err.validator == "required":
            parts.append(err.message.split("'")[1])
        text = ""
        for p in parts:
            text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else p)
        paths.append(text)
    return paths


def apply_defaults(schema: dict[str, Any], obj: Any) -> Any:
    """Structural defaulting as the API server does it: a missing field with a ``default`` gets it,
    recursively (defaults of the default's own fields included)."""
    if not isinstance(obj, dict) or schema.get("type") != "object":
        return obj
    out = dict(obj)
    for key, sub in schema.get("properties", {}).items():
        if key not in out and "default" in sub:
            out[key] = copy.deepcopy(sub["default"])
        if key in out:
            out[key] = apply_defaults(sub, out[key])
    return out


def test_crds_are_structural_with_status_and_printer_columns() -> None:
    for path in sorted((MANIFESTS / "base" / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        (v,) = crd["spec"]["versions"]
        assert v["name"] == "v1alpha1" and v["subresources"] == {"status": {}}
        assert {c["name"] for c in v["additionalPrinterColumns"]} >= {"Phase", "Age"}
        jsonschema.Draft4Validator.check_schema(v["schema"]["openAPIV3Schema"])


@pytest.mark.parametrize(("name", "obj"), VALID, ids=[n for n, _ in VALID])
def test_valid_samples_pass_schema_and_operator(name: str, obj: dict[str, Any]) -> None:
    assert schema_errors(obj) == []
    parse = PARSERS[obj["kind"]]
    defaulted = apply_defaults(crd_schemas()[obj["kind"]], obj)
    # The operator's defaults are the CRD's: parsing the raw and the API-server-defaulted spec agree.
    assert parse(obj["spec"]) == parse(defaulted["spec"])
    if obj["kind"] == "DistillationRun":  # its overrides make a valid pipeline config
        assert render.pipeline_config(parse_distillation_run(obj["spec"]))["profile"] == obj["spec"]["profile"]


@pytest.mark.parametrize(("name", "obj"), INVALID, ids=[n for n, _ in INVALID])
def test_invalid_samples_are_rejected_naming_the_field(name: str, obj: dict[str, Any]) -> None:
    expected = obj["metadata"]["annotations"][EXPECT]
    errors = schema_errors(obj)
    if obj["metadata"]["annotations"].get(SCHEMA_VALID) == "true":
        assert errors == [], f"{name}: the schema cannot express this rule, yet rejected {errors}"
    else:
        assert expected in errors, f"{name}: schema errors {errors} do not name {expected}"
    with pytest.raises(SpecError) as info:
        PARSERS[obj["kind"]](obj["spec"])
    assert info.value.field == expected
    assert str(info.value).startswith(expected)
