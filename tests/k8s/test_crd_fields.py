"""Every field a CRD accepts takes effect, or the schema refuses it: the walker lists the leaves of each CRD's
``spec`` schema, and each leaf has a row saying where setting it shows.

* DistillationRun: what reaches Kubeflow Pipelines. The operator's own submission path (``ensure_submitted`` →
  ``pipelines.kfp_backend.KfpBackend``) posts to the KFP stub on loopback; a row names the place in the posted
  run (a pipeline parameter, the ``config_json`` it carries, the compiled spec's resources or loop limit, the
  experiment, the pipeline root) and the value a CR's setting puts there, and the test checks the default puts
  something else there.
* RelevanceExperiment: the field of the operator's parsed spec it sets (its effects downstream are the rollout
  tests'); the table belongs to whoever owns that CRD and must grow with it.

A field added to a CRD without a row fails :func:`test_every_leaf_has_a_row`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from distillery.operator import render
from distillery.operator.runs import ensure_submitted
from distillery.operator.settings import OperatorSettings
from distillery.operator.spec import parse_distillation_run, parse_relevance_experiment
from tests.k8s.conftest import crd_schemas
from tests.k8s.kfp_stub import KfpStub


def leaves(schema: dict[str, Any], path: str = "spec") -> Iterator[str]:
    """Dotted paths of a schema's settable leaves: scalars, lists, and maps of free keys (``overrides``)."""
    props = schema.get("properties")
    if schema.get("type") == "object" and props:
        for key, sub in props.items():
            yield from leaves(sub, f"{path}.{key}")
    else:
        yield path


def spec_leaves(kind: str) -> set[str]:
    return set(leaves(crd_schemas()[kind]["properties"]["spec"]))


Submitted = dict[str, Any]
Where = Callable[[Submitted], Any]


def _param(name: str) -> Where:
    return lambda s: s["params"].get(name)


def _config(*keys: str) -> Where:
    def get(s: Submitted) -> Any:
        node = json.loads(s["params"]["config_json"])
        for k in keys:
            node = node[k]
        return node
    return get


def _loop_limit(s: Submitted) -> Any:
    tasks = s["spec"]["components"]["comp-annotation"]["dag"]["tasks"].values()
    (loop,) = [t for t in tasks if t["taskInfo"]["name"] == "annotation-shards"]
    return loop["iteratorPolicy"]["parallelismLimit"]


def _student_gpu(s: Submitted) -> Any:
    """(GPU type requested, on the GPU node pool) of both student steps (a pair each)."""
    execs = s["spec"]["deploymentSpec"]["executors"]
    k8s = s["platform"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    got = {(execs[e]["container"]["resources"].get("accelerator", {}).get("resourceType"),
            "nodeSelector" in k8s.get(e, {})) for e in ("exec-distill-student", "exec-finetune-student")}
    (both,) = got
    return both


BASE: dict[str, Any] = {"data": {"source": "synthetic:100"}, "profile": "tiny", "output": {"uri": "s3://runs/base"}}
TRAINJOB = {"teacher": {"training": {"launcher": "trainjob"}}}

DISTILLATION_RUN: dict[str, tuple[dict[str, Any], Where, Any]] = {
    # leaf: (what the CR sets (merged into BASE), where it shows in the submitted run, the value it puts there)
    "spec.data.source": ({"data": {"source": "parquet:s3://data/logs.parquet"}}, _param("data_spec"),
                         "parquet:s3://data/logs.parquet"),
    "spec.profile": ({"profile": "demo"}, _config("profile"), "demo"),
    "spec.overrides": ({"overrides": {"train.lr": "0.0005"}}, _config("train", "lr"), 0.0005),
    "spec.teacher.model": ({"teacher": {"model": "acme/teacher-7b"}}, _config("teacher", "model"), "acme/teacher-7b"),
    "spec.teacher.training.launcher": (TRAINJOB, _config("teacher", "launch", "launcher"), "trainjob"),
    "spec.teacher.training.numNodes": ({"teacher": {"training": {"launcher": "pytorchjob", "numNodes": 3}}},
                                       _config("teacher", "launch", "num_nodes"), 3),
    "spec.teacher.training.procsPerNode": ({"teacher": {"training": {"procsPerNode": 4}}},
                                           _config("teacher", "launch", "procs_per_node"), 4),
    "spec.annotation.shards": ({"annotation": {"shards": 7}}, _param("shards"), 7),
    "spec.annotation.parallelism": ({"annotation": {"parallelism": 3}}, _loop_limit, 3),
    "spec.student.model": ({"student": {"model": "acme/bert"}}, _config("student", "model"), "acme/bert"),
    "spec.student.epochs": ({"student": {"epochs": 9}}, _config("train", "epochs"), 9),
    "spec.student.maxLength": ({"student": {"maxLength": 96}}, _config("student", "max_length"), 96),
    "spec.student.gpu": ({"student": {"gpu": False}, "overrides": {"export.variants": "python,tensorrt"}},
                         lambda s: (*_student_gpu(s), s["params"]["tensorrt_plan"]), (None, False, False)),
    "spec.output.uri": ({"output": {"uri": "s3://runs/other"}}, lambda s: (s["params"]["output_uri"], s["root"]),
                        ("s3://runs/other", "s3://runs/other/kfp")),
    "spec.serving.repository": ({"serving": {"repository": "s3://models/repo"}}, _param("serving_uri"),
                                "s3://models/repo"),
    "spec.kfp.experiment": ({"kfp": {"experiment": "ab-tests"}}, lambda s: s["experiment"], "ab-tests"),
}

RELEVANCE_EXPERIMENT: dict[str, tuple[Any, Callable[[Any], Any], Any]] = {
    # leaf: (the value set, the parsed spec's field it sets, the parsed value)
    "spec.champion.model": ("ranker", lambda e: e.champion.model, "ranker"),
    "spec.champion.version": (3, lambda e: e.champion.version, 3),
    "spec.challenger.model": ("ranker", lambda e: e.challenger.model, "ranker"),
    "spec.challenger.version": (4, lambda e: e.challenger.version, 4),
    "spec.traffic.steps": ([5, 100], lambda e: e.steps, (5, 100)),
    "spec.gate.primaryMetric": ("cvr", lambda e: e.gate.primary_metric, "cvr"),
    "spec.gate.alpha": (0.01, lambda e: e.gate.alpha, 0.01),
    "spec.gate.minUsers": (77, lambda e: e.gate.min_users_per_arm, 77),
    "spec.gate.guardrailMetrics": (["ndcg"], lambda e: e.gate.guardrail_metrics, ["ndcg"]),
    "spec.gate.maxLatencyRatio": (2.5, lambda e: e.gate.max_latency_ratio, 2.5),
    "spec.gate.maxErrorRate": (0.2, lambda e: e.gate.max_error_rate, 0.2),
    "spec.gate.maxAnalysesPerStep": (5, lambda e: e.max_analyses_per_step, 5),
    "spec.analysisIntervalSeconds": (42, lambda e: e.interval_s, 42),
    "spec.metricsSource.uri": ("s3://events/x", lambda e: e.metrics_uri, "s3://events/x"),
    "spec.splitter.configMap": ("other-split", lambda e: e.config_map, "other-split"),
    "spec.serving.repository": ("s3://models/repo", lambda e: e.serving_uri, "s3://models/repo"),
}
RE_BASE: dict[str, Any] = {"champion": {"model": "relevance", "version": 1},
                           "challenger": {"model": "relevance", "version": 2},
                           "metricsSource": {"uri": "/var/log/splitter"}}


@pytest.mark.parametrize(("kind", "table"), [("DistillationRun", DISTILLATION_RUN),
                                             ("RelevanceExperiment", RELEVANCE_EXPERIMENT)])
def test_every_leaf_has_a_row(kind: str, table: dict[str, Any]) -> None:
    leaves_ = spec_leaves(kind)
    assert leaves_ - set(table) == set(), f"{kind}: CRD fields with no row saying where they take effect"
    assert set(table) - leaves_ == set(), f"{kind}: rows for fields the CRD no longer has"


def test_dropped_fields_are_gone_from_the_schema() -> None:
    # output.modelName named a Triton model the exporter never wrote under another name: removed, so that
    # `kubectl apply` (strict field validation) refuses it instead of the operator ignoring it.
    assert "spec.output.modelName" not in spec_leaves("DistillationRun")


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.fixture(scope="module")
def kfp() -> Iterator[tuple[KfpStub, Any]]:
    from pipelines.kfp_backend import KfpBackend

    with KfpStub() as stub:
        yield stub, KfpBackend(OperatorSettings(kfp_host=stub.url, serving_repository=""))


def submit(kfp: tuple[KfpStub, Any], cr_spec: dict[str, Any], name: str) -> Submitted:
    """The CR's run as the operator submits it, read back from what the KFP stub received."""
    stub, backend = kfp
    run = parse_distillation_run(cr_spec)
    serving = render.serving_repository(run, backend.settings.serving_repository)
    run_id, adopted = ensure_submitted(backend, run, name, {}, serving, "")
    assert not adopted
    body = stub.runs[run_id]
    wrapped = body["pipeline_spec"]
    return {"params": body["runtime_config"]["parameters"], "root": body["runtime_config"].get("pipeline_root"),
            "spec": wrapped["pipeline_spec"], "platform": wrapped.get("platform_spec", {}),
            "experiment": stub.experiments[body["experiment_id"]]["display_name"]}


@pytest.fixture(scope="module")
def base_run(kfp: tuple[KfpStub, Any]) -> Submitted:
    return submit(kfp, BASE, "base")


@pytest.mark.parametrize("leaf", sorted(DISTILLATION_RUN))
def test_a_distillation_run_field_reaches_kfp(leaf: str, kfp: tuple[KfpStub, Any], base_run: Submitted) -> None:
    setting, where, value = DISTILLATION_RUN[leaf]
    got = submit(kfp, _merge(BASE, setting), f"run-{leaf}")
    assert where(got) == value, f"{leaf}: the submitted run shows {where(got)!r}"
    assert where(base_run) != value, f"{leaf}: the default already gives {value!r}: the row proves nothing"


@pytest.mark.parametrize("leaf", sorted(RELEVANCE_EXPERIMENT))
def test_a_relevance_experiment_field_reaches_the_operator(leaf: str) -> None:
    value, where, parsed = RELEVANCE_EXPERIMENT[leaf]
    keys = leaf.split(".")[1:]
    setting: dict[str, Any] = value
    for k in reversed(keys):
        setting = {k: setting}
    assert where(parse_relevance_experiment(_merge(RE_BASE, setting))) == parsed
    assert where(parse_relevance_experiment(RE_BASE)) != parsed


@pytest.mark.parametrize("repo", ["file:///models/triton", "/models/triton", "s3://Bad_Bucket/triton"])
def test_both_crds_take_the_serving_repository_only_as_s3(repo: str) -> None:
    """A RelevanceExperiment promotes in the repository DistillationRuns publish into: the same s3:// rule for
    both CRs, the operator's default and the CRD schemas."""
    import re

    from distillery.operator.spec import SpecError
    from distillery.storage import S3_URI

    schemas = crd_schemas()
    for kind in ("DistillationRun", "RelevanceExperiment"):
        field = schemas[kind]["properties"]["spec"]["properties"]["serving"]["properties"]["repository"]
        assert field["pattern"] == S3_URI.pattern, kind
        assert not re.match(field["pattern"], repo)
    with pytest.raises(SpecError) as info:
        parse_relevance_experiment({**RE_BASE, "serving": {"repository": repo}})
    assert info.value.field == "spec.serving.repository"
    with pytest.raises(ValueError, match="DISTILLERY_SERVING_REPOSITORY"):
        OperatorSettings(serving_repository=repo)
