"""What the operator writes, rendered from a spec by pure functions: the KFP run's name and
arguments, and the splitter's ConfigMap (arms and weights as declared data)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from distillery.config import ConfigError, load_config, parse_overrides
from distillery.operator.spec import GROUP, Arm, DistillationRunSpec, RelevanceExperimentSpec, SpecError

SPLIT_KEY = "split.json"
"""The ConfigMap key the splitter reads (``distillery.abtest.arms.load_split`` format)."""


def run_name(namespace: str, name: str, uid: str) -> str:
    """The KFP run's display name: unique per custom resource *instance* (the uid survives restarts
    of the operator but not a delete-and-recreate), so a restarted operator finds its earlier run."""
    return f"{namespace}.{name}.{uid[:8]}"


TRAINING_FIELDS = {"launcher": "launcher", "num_nodes": "numNodes", "procs_per_node": "procsPerNode"}
"""``teacher.launch.<field>`` → the ``spec.teacher.training`` key that sets it."""


def overrides(spec: DistillationRunSpec) -> list[str]:
    """The spec's config settings as ``--set KEY=VALUE`` strings; typed fields win over free overrides."""
    merged = dict(spec.overrides)
    typed = {
        "teacher.model": spec.teacher_model,
        "student.model": spec.student_model,
        "train.epochs": spec.epochs,
        "student.max_length": spec.max_length,
        **{f"teacher.launch.{name}": getattr(spec, name) for name in TRAINING_FIELDS},
    }
    merged.update({k: str(v) for k, v in typed.items() if v is not None})
    return [f"{k}={v}" for k, v in sorted(merged.items())]


def _spec_field(spec: DistillationRunSpec, exc: ConfigError) -> str:
    """The CR field behind a config error: ``teacher.launch.num_nodes=…`` → ``spec.teacher.training.numNodes``
    when the CR set it there, else ``spec.overrides``."""
    key = str(exc).split("=", 1)[0].split(":", 1)[0]
    name = key.removeprefix("teacher.launch.")
    typed = name in TRAINING_FIELDS and getattr(spec, name) is not None
    return f"spec.teacher.training.{TRAINING_FIELDS[name]}" if typed else "spec.overrides"


def pipeline_config(spec: DistillationRunSpec, resource: str | None = None) -> dict[str, Any]:
    """The run's full, validated configuration (profile → overrides), as the pipeline's ``config_json``
    carries it; a bad value is a :class:`SpecError` on the field that set it (``spec.overrides`` or
    ``spec.teacher.training.*``), naming ``resource`` if given."""
    try:
        return load_config(spec.profile, overrides=parse_overrides(overrides(spec))).to_dict()
    except ConfigError as exc:
        raise SpecError(_spec_field(spec, exc), str(exc), resource) from None


@dataclass(frozen=True)
class Placement:
    """How the submitted pipeline is laid out on the cluster: settings KFP fixes when a pipeline is compiled
    (resources, a ParallelFor's limit) rather than taking as run parameters, so the backend applies them to the
    compiled spec it submits (``pipelines/placement.py``)."""

    gpu: bool = True
    """The student steps request a GPU and go to the GPU node pool (``spec.student.gpu``)."""
    parallelism: int = 4
    """Annotation shards run at once (``spec.annotation.parallelism``)."""


def placement(spec: DistillationRunSpec) -> Placement:
    return Placement(gpu=spec.gpu, parallelism=spec.parallelism)


def serving_repository(spec: DistillationRunSpec, default: str) -> str:
    """Where a deployable student is published: the CR's ``spec.serving.repository``, else the operator's default."""
    return spec.serving_uri or default


def pipeline_arguments(spec: DistillationRunSpec, serving_uri: str = "", champion: str = "",
                       run_label: str = "") -> dict[str, Any]:
    """Parameters of the end-to-end pipeline for one run, each one it declares.  ``serving_uri``: the repository
    the deploy step publishes into (empty: the pipeline skips deployment); ``champion``: the student serving
    there now, which the new one must match (empty: none yet); ``run_label``: recorded with the published
    version, so that the operator finds it (:mod:`distillery.operator.repository`)."""
    config = pipeline_config(spec)
    return {
        "data_spec": spec.data_source,
        "config_json": json.dumps(config, sort_keys=True),
        "shards": spec.shards,
        "output_uri": spec.output_uri,
        "serving_uri": serving_uri,
        "champion": champion,
        "run_label": run_label,
        # annotation shards checkpoint next to the run's artifacts, so a retried shard pod resumes on an empty disk
        "checkpoint_uri": f"{spec.output_uri.rstrip('/')}/checkpoints" if spec.output_uri.startswith("s3://") else "",
        # a TensorRT plan is built on a GPU node, for a repository that serves the tensorrt variant
        "tensorrt_plan": spec.gpu and "tensorrt" in config["export"]["variants"],
    }


def weights(spec: RelevanceExperimentSpec, step: int, phase: str) -> dict[str, int]:
    """Percent of users per arm at ``step`` of the traffic plan (a terminal phase overrides it)."""
    if phase in ("Promoted", "RolledBack"):
        return {"champion": 100, "challenger": 0}
    challenger = spec.steps[step]
    return {"champion": 100 - challenger, "challenger": challenger}


def serving_model(arm: Arm) -> str:
    """The Triton model that serves ``arm``: version N of ``relevance`` is its own ensemble ``relevance_vN``
    (``distillery.export.repository``; the ``relevance`` ensemble itself has only version 1, the champion)."""
    return f"{arm.model}_v{arm.version}"


def split_document(experiment: str, salt: str, champion: Arm, challenger: Arm, w: dict[str, int]) -> dict[str, Any]:
    """The split the splitter loads: two arms, weights summing to 100, a salt fixed for the whole
    experiment so that users keep their arm when only the weights move."""
    return {
        "experiment": experiment,
        "salt": salt,
        "champion": "champion",
        "arms": [
            {"name": "champion", "model": serving_model(champion), "version": "", "weight": w["champion"]},
            {"name": "challenger", "model": serving_model(challenger), "version": "", "weight": w["challenger"]},
        ],
    }


def salt(namespace: str, name: str, uid: str) -> str:
    return hashlib.sha256(f"{namespace}/{name}/{uid}".encode()).hexdigest()[:16]


def splitter_configmap(namespace: str, name: str, uid: str, spec: RelevanceExperimentSpec,
                       champion: Arm, w: dict[str, int]) -> dict[str, Any]:
    """The splitter's ConfigMap for experiment ``namespace/name``; ``champion`` is the *current* one
    (after a promotion it is the challenger's version)."""
    doc = split_document(f"{namespace}/{name}", salt(namespace, name, uid), champion, spec.challenger, w)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": spec.config_map,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "splitter", "app.kubernetes.io/part-of": "relevance-distillery"},
            "annotations": {f"{GROUP}/experiment": name},
        },
        "data": {SPLIT_KEY: json.dumps(doc, sort_keys=True)},
    }
