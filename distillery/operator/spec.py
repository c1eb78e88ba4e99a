"""Typed, validated views of the two custom resources' ``spec``.

The API server validates a CR against the CRD's ``openAPIV3Schema`` and applies its defaults; the
operator validates again here because (a) some rules cannot be said in a schema (strictly increasing
traffic steps, a challenger that differs from the champion) and (b) a CR may have been stored before
the CRD got stricter. Defaults and bounds are the CRD's (``manifests/base/crds/``); a test checks that
both agree. ``spec.gate`` maps onto the gate's one definition, :class:`distillery.config.ABTestConfig`
(:data:`GATE_FIELDS`), whose defaults and range checks are the ones used. Every failure is a
:class:`SpecError` naming the field, e.g. ``spec.annotation.shards``.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from distillery.config import ABTEST_METRICS, ABTestConfig, ConfigError
from distillery.data.schema import DataError
from distillery.data.spec import check_spec
from distillery.storage import BUCKET_PATTERN, S3_URI

GROUP = "distillery.relevance.dev"
VERSION = "v1alpha1"
PROFILES = ("tiny", "demo", "full")
LAUNCHERS = ("local", "trainjob", "pytorchjob")
"""Where a DistillationRun's teacher trains (``teacher.launch.launcher``); ``torchrun`` is for one machine, not a CR."""
_TARGET = rf"(s3://{BUCKET_PATTERN}/[^,]+|[^,:]+)"
_FIELDS = r"(query_id|query|item_id|title|brand|color|attributes|bullet_points|description|label|label_source)"
_NOISE = r"(0(\.([0-4][0-9]*|50*)?)?|\.([0-4][0-9]*|50*))"
DATA_SOURCE = re.compile(
    rf"^(esci:{_TARGET}(,locale=[^,]*)*"
    rf"|(jsonl|csv|tsv|parquet):{_TARGET}(,{_FIELDS}=[^,]+)*"
    rf"|synthetic:0*[1-9][0-9]*(,(seed=[0-9]+|noise={_NOISE}))*)$"
)
"""The CRD's pattern for ``spec.data.source``: what :func:`distillery.data.spec.check_spec` accepts, in a form the
API server can check (a test holds both to the same table of cases); the operator runs ``check_spec`` itself."""
MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
METRICS_URI = re.compile(r"^(s3://|file://|/).+")
DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class SpecError(ValueError):
    """A custom resource's spec is invalid; ``field`` is the JSON path of the offending field."""

    def __init__(self, field: str, message: str, resource: str | None = None) -> None:
        super().__init__(f"{resource}: {field}: {message}" if resource else f"{field}: {message}")
        self.field, self.message, self.resource = field, message, resource

    def within(self, resource: str | None) -> SpecError:
        """The same error naming the custom resource (``DistillationRun ns/name``) it came from."""
        return SpecError(self.field, self.message, resource) if resource and not self.resource else self


class _Reader:
    """Reads typed fields out of a nested mapping, remembering the path for error messages."""

    def __init__(self, data: Any, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise SpecError(path, f"must be an object, got {type(data).__name__}")
        self.data, self.path = data, path

    def sub(self, key: str, required: bool = False) -> _Reader:
        if required and key not in self.data:
            raise SpecError(f"{self.path}.{key}", "is required")
        return _Reader(self.data.get(key), f"{self.path}.{key}")

    def _raw(self, key: str, default: Any, required: bool) -> Any:
        if key not in self.data or self.data[key] is None:
            if required:
                raise SpecError(f"{self.path}.{key}", "is required")
            return default
        return self.data[key]

    def text(self, key: str, default: str | None = None, *, required: bool = False,
            pattern: re.Pattern[str] | None = None, choices: tuple[str, ...] = ()) -> Any:
        value = self._raw(key, default, required)
        where = f"{self.path}.{key}"
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise SpecError(where, f"must be a non-empty string, got {value!r}")
        if pattern is not None and not pattern.match(value):
            raise SpecError(where, f"{value!r} does not match {pattern.pattern}")
        if choices and value not in choices:
            raise SpecError(where, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def integer(self, key: str, default: int | None, lo: int, hi: int | None = None, *, required: bool = False) -> Any:
        return _int(self._raw(key, default, required), f"{self.path}.{key}", lo, hi)

    def number(self, key: str, default: float | None, lo: float, hi: float, *, lo_open: bool = False) -> float:
        value, where = self._raw(key, default, default is None), f"{self.path}.{key}"
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise SpecError(where, f"must be a finite number, got {value!r}")
        if value < lo or value > hi or (lo_open and value == lo):
            raise SpecError(where, f"{value} is outside {'(' if lo_open else '['}{lo}, {hi}]")
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self._raw(key, default, False)
        if not isinstance(value, bool):
            raise SpecError(f"{self.path}.{key}", f"must be true or false, got {value!r}")
        return value


def _int(value: Any, where: str, lo: int, hi: int | None) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(where, f"must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise SpecError(where, f"{value} is outside [{lo}, {'∞' if hi is None else hi}]")
    return value


@dataclass(frozen=True)
class DistillationRunSpec:
    """What one end-to-end pipeline run needs; see the CRD for each field's meaning."""

    data_source: str
    output_uri: str
    profile: str = "full"
    overrides: dict[str, str] = field(default_factory=dict)
    teacher_model: str | None = None
    shards: int = 4
    parallelism: int = 4
    """Shards annotated at once: the annotation ParallelFor's limit in the submitted pipeline."""
    student_model: str | None = None
    epochs: int | None = None
    max_length: int | None = None
    gpu: bool = True
    """The student steps (distillation, seed-label baseline) request a GPU and run on the GPU node pool."""
    serving_uri: str | None = None
    """``spec.serving.repository``: the Triton model repository (``s3://``) a deployable student is published into
    as the next version (unset: the operator's ``DISTILLERY_SERVING_REPOSITORY``)."""
    launcher: str | None = None
    """``spec.teacher.training.launcher`` → ``teacher.launch.launcher`` (unset: the profile decides)."""
    num_nodes: int | None = None
    """``spec.teacher.training.numNodes`` → ``teacher.launch.num_nodes``."""
    procs_per_node: int | None = None
    """``spec.teacher.training.procsPerNode`` → ``teacher.launch.procs_per_node``."""
    experiment: str = "relevance-distillery"


def parse_distillation_run(spec: Mapping[str, Any] | None, resource: str | None = None) -> DistillationRunSpec:
    """Validate a ``DistillationRun`` spec and fill in the CRD's defaults; raises :class:`SpecError` (naming
    ``resource``, e.g. ``DistillationRun ns/name``, when given)."""
    try:
        return _parse_distillation_run(spec)
    except SpecError as exc:
        raise exc.within(resource) from None


def _parse_distillation_run(spec: Mapping[str, Any] | None) -> DistillationRunSpec:
    r = _Reader(spec, "spec")
    overrides = r.sub("overrides").data
    for key, value in overrides.items():
        if not isinstance(value, str):
            raise SpecError(f"spec.overrides.{key}", f"must be a string, got {value!r}")
    ann, student, output = r.sub("annotation"), r.sub("student"), r.sub("output", required=True)
    teacher = r.sub("teacher")
    training = teacher.sub("training")
    source = r.sub("data", required=True).text("source", required=True)
    try:
        check_spec(source)  # the data layer's own rules, so that the pipeline's first step cannot refuse it
    except DataError as exc:
        raise SpecError("spec.data.source", str(exc)) from None
    return DistillationRunSpec(
        data_source=source,
        output_uri=output.text("uri", required=True, pattern=S3_URI),
        profile=r.text("profile", "full", choices=PROFILES),
        overrides=dict(overrides),
        teacher_model=teacher.text("model"),
        shards=ann.integer("shards", 4, 1, 256),
        parallelism=ann.integer("parallelism", 4, 1, 64),
        student_model=student.text("model"),
        epochs=student.integer("epochs", None, 1, 100),
        max_length=student.integer("maxLength", None, 16, 1024),
        gpu=student.flag("gpu", True),
        serving_uri=r.sub("serving").text("repository", pattern=S3_URI),
        launcher=training.text("launcher", choices=LAUNCHERS),
        num_nodes=training.integer("numNodes", None, 1, 4096),
        procs_per_node=training.integer("procsPerNode", None, 1, 64),
        experiment=r.sub("kfp").text("experiment", "relevance-distillery"),
    )


@dataclass(frozen=True)
class Arm:
    """A model name and version in the Triton repository."""

    model: str
    version: int


GATE_FIELDS: dict[str, str] = {
    "primaryMetric": "primary_metric",
    "alpha": "alpha",
    "minUsers": "min_users_per_arm",
    "guardrailMetrics": "guardrail_metrics",
    "maxLatencyRatio": "max_latency_ratio",
    "maxErrorRate": "max_error_rate",
}
"""``spec.gate.<key>`` of a ``RelevanceExperiment`` → the field of :class:`distillery.config.ABTestConfig` it
sets: the gate has one definition (``abtest.*``), the same for ``distillery abtest``, the pipeline and the
operator.  Defaults and ranges are ABTestConfig's own; a field the CRD does not expose keeps its default."""
NOT_IN_CRD: dict[str, str] = {
    **dict.fromkeys(("tau_rel", "srm_alpha", "latency_quantile", "latency_alpha", "min_requests"),
                    "gate tuning the v1alpha1 CRD does not expose: the operator runs the gate with its defaults"),
    **dict.fromkeys(("users_per_batch", "sessions_per_user", "shown", "concurrency", "request_timeout_s", "seed"),
                    "simulated traffic only: live users come from the splitter's log"),
}
"""The ABTestConfig fields a CR cannot set, and why (a test checks that every field is mapped or listed here)."""
ROLLOUT_GATE_FIELDS = ("maxAnalysesPerStep",)
"""``spec.gate`` keys that steer the rollout rather than the gate (see :mod:`distillery.operator.rollout`)."""


@dataclass(frozen=True)
class RelevanceExperimentSpec:
    champion: Arm
    challenger: Arm
    metrics_uri: str
    steps: tuple[int, ...] = (10, 50, 100)
    gate: ABTestConfig = field(default_factory=ABTestConfig)
    """The promotion gate's settings (``spec.gate``, mapped through :data:`GATE_FIELDS`)."""
    max_analyses_per_step: int = 0
    """``spec.gate.maxAnalysesPerStep``: analyses at one step without a decision before rolling back (0: no limit)."""
    interval_s: int = 300
    config_map: str = "distillery-splitter"
    serving_uri: str | None = None
    """``spec.serving.repository``: the Triton model repository (``s3://``, as for a DistillationRun) whose champion
    a promotion rewrites (unset: the operator's ``DISTILLERY_SERVING_REPOSITORY``, where DistillationRuns publish)."""


def _arm(r: _Reader, key: str) -> Arm:
    a = r.sub(key, required=True)
    return Arm(a.text("model", required=True, pattern=MODEL_NAME), a.integer("version", None, 1, required=True))


def _steps(r: _Reader) -> tuple[int, ...]:
    raw = r.sub("traffic")._raw("steps", [10, 50, 100], False)
    if not isinstance(raw, list) or not 1 <= len(raw) <= 10:
        raise SpecError("spec.traffic.steps", "must be a list of 1 to 10 percentages")
    steps = tuple(_int(v, f"spec.traffic.steps[{i}]", 1, 100) for i, v in enumerate(raw))
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise SpecError("spec.traffic.steps", f"{list(steps)} must be strictly increasing")
    if steps[0] >= 100:
        raise SpecError("spec.traffic.steps[0]", "must leave the champion some traffic (< 100) to compare against")
    return steps


def _gate(r: _Reader) -> tuple[ABTestConfig, int]:
    """``spec.gate`` as the gate's :class:`ABTestConfig` (through :data:`GATE_FIELDS`) and the rollout's
    ``maxAnalysesPerStep``; types are checked here, ranges by ABTestConfig, each error naming the CR's field."""
    g = r.sub("gate")
    known = (*GATE_FIELDS, *ROLLOUT_GATE_FIELDS)
    for key in g.data:
        if key not in known:
            raise SpecError(f"{g.path}.{key}", f"unknown field (known: {', '.join(known)})")
    defaults = ABTestConfig()
    values = {name: _gate_value(g, key, getattr(defaults, name)) for key, name in GATE_FIELDS.items()}
    try:
        gate = ABTestConfig(**values)
    except ConfigError as exc:  # "abtest.<field>=<value>: <why>" → the CR's field
        name, _, why = str(exc).partition("=")
        key = {f"abtest.{v}": k for k, v in GATE_FIELDS.items()}.get(name)
        raise SpecError(f"{g.path}.{key}" if key else g.path, why if key else str(exc)) from None
    return gate, g.integer("maxAnalysesPerStep", 0, 0)


def _gate_value(g: _Reader, key: str, default: Any) -> Any:
    """``spec.gate.<key>`` checked against the type of its ABTestConfig default."""
    if isinstance(default, str):
        return g.text(key, default)
    if isinstance(default, list):
        rails = g._raw(key, list(default), False)
        if not isinstance(rails, list) or len(rails) > 4:
            raise SpecError(f"{g.path}.{key}", "must be a list of at most 4 metrics")
        for i, m in enumerate(rails):
            if m not in ABTEST_METRICS:
                raise SpecError(f"{g.path}.{key}[{i}]", f"{m!r} is not one of {', '.join(ABTEST_METRICS)}")
        return list(rails)
    if isinstance(default, int):
        return g.integer(key, default, -(2**63))
    return g.number(key, default, -math.inf, math.inf)


def parse_relevance_experiment(spec: Mapping[str, Any] | None, resource: str | None = None
                               ) -> RelevanceExperimentSpec:
    """Validate a ``RelevanceExperiment`` spec and fill in the CRD's defaults; raises :class:`SpecError` (naming
    ``resource``, e.g. ``RelevanceExperiment ns/name``, when given)."""
    try:
        return _parse_relevance_experiment(spec)
    except SpecError as exc:
        raise exc.within(resource) from None


def _parse_relevance_experiment(spec: Mapping[str, Any] | None) -> RelevanceExperimentSpec:
    r = _Reader(spec, "spec")
    champion, challenger = _arm(r, "champion"), _arm(r, "challenger")
    if challenger == champion:
        raise SpecError("spec.challenger", f"is the champion itself ({champion.model} v{champion.version})")
    metrics_uri = r.sub("metricsSource", required=True).text("uri", required=True, pattern=METRICS_URI)
    steps = _steps(r)
    gate, max_analyses = _gate(r)
    return RelevanceExperimentSpec(
        champion=champion,
        challenger=challenger,
        metrics_uri=metrics_uri,
        steps=steps,
        gate=gate,
        max_analyses_per_step=max_analyses,
        interval_s=r.integer("analysisIntervalSeconds", 300, 1, 86400),
        config_map=r.sub("splitter").text("configMap", "distillery-splitter", pattern=DNS_NAME),
        serving_uri=r.sub("serving").text("repository", None, pattern=S3_URI),
    )
