"""What the operator writes, rendered from a spec by pure functions: the KFP run's name and
arguments, and the splitter's ConfigMap (arms and weights as declared data)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from distillery.config import ConfigError, load_config, parse_overrides
from distillery.operator.spec import GROUP, Arm, DistillationRunSpec, RelevanceExperimentSpec, SpecError

SPLIT_KEY = "split.json"
"""The ConfigMap key the splitter reads (``distillery.abtest.arms.load_split`` format)."""


def run_name(namespace: str, name: str, uid: str) -> str:
    """The KFP run's display name: unique per custom resource *instance* (the uid survives restarts
    of the operator but not a delete-and-recreate), so a restarted operator finds its earlier run."""
    return f"{namespace}.{name}.{uid[:8]}"


def overrides(spec: DistillationRunSpec) -> list[str]:
    """The spec's config settings as ``--set KEY=VALUE`` strings; typed fields win over free overrides."""
    merged = dict(spec.overrides)
    typed = {
        "teacher.model": spec.teacher_model,
        "student.model": spec.student_model,
        "train.epochs": spec.epochs,
        "student.max_length": spec.max_length,
    }
    merged.update({k: str(v) for k, v in typed.items() if v is not None})
    return [f"{k}={v}" for k, v in sorted(merged.items())]


def pipeline_config(spec: DistillationRunSpec, resource: str | None = None) -> dict[str, Any]:
    """The run's full, validated configuration (profile → overrides), as the pipeline's ``config_json``
    carries it; a bad override is a :class:`SpecError` on ``spec.overrides`` (naming ``resource`` if given)."""
    try:
        return load_config(spec.profile, overrides=parse_overrides(overrides(spec))).to_dict()
    except ConfigError as exc:
        raise SpecError("spec.overrides", str(exc), resource) from None


def pipeline_arguments(spec: DistillationRunSpec) -> dict[str, Any]:
    """Arguments of the end-to-end pipeline for one run. The backend passes those the compiled
    pipeline declares and reports the rest (a pipeline without a fan-out width takes no ``shards``)."""
    return {
        "data_spec": spec.data_source,
        "config_json": json.dumps(pipeline_config(spec), sort_keys=True),
        "shards": spec.shards,
        "parallelism": spec.parallelism,
        "output_uri": spec.output_uri,
        "model_name": spec.model_name,
        "use_gpu": spec.gpu,
    }


def weights(spec: RelevanceExperimentSpec, step: int, phase: str) -> dict[str, int]:
    """Percent of users per arm at ``step`` of the traffic plan (a terminal phase overrides it)."""
    if phase in ("Promoted", "RolledBack"):
        return {"champion": 100, "challenger": 0}
    challenger = spec.steps[step]
    return {"champion": 100 - challenger, "challenger": challenger}


def split_document(experiment: str, salt: str, champion: Arm, challenger: Arm, w: dict[str, int]) -> dict[str, Any]:
    """The split the splitter loads: two arms, weights summing to 100, a salt fixed for the whole
    experiment so that users keep their arm when only the weights move."""
    return {
        "experiment": experiment,
        "salt": salt,
        "champion": "champion",
        "arms": [
            {"name": "champion", "model": champion.model, "version": str(champion.version), "weight": w["champion"]},
            {"name": "challenger", "model": challenger.model, "version": str(challenger.version),
             "weight": w["challenger"]},
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
