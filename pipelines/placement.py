"""A DistillationRun's placement applied to the compiled end-to-end pipeline before it is submitted.

KFP fixes a task's resources and a ``ParallelFor``'s limit when the pipeline is compiled: they are not run
parameters. So the operator's backend compiles once and, per run, edits the compiled spec
(:class:`distillery.operator.render.Placement`): ``parallelism`` becomes the annotation loop's
``iteratorPolicy.parallelismLimit``; ``gpu: false`` takes the student steps (the distillation sub-pipeline:
distillation and the seed-label baseline) off the GPU: no ``nvidia.com/gpu`` request, no GPU node selector
or toleration. ``gpu: true`` is the compiled default. Pure functions over the parsed YAML documents::

    docs = list(yaml.safe_load_all(Path("end-to-end.yaml").read_text()))
    laid_out = apply(docs, Placement(gpu=False, parallelism=8))   # then yaml.safe_dump_all(laid_out)
"""

from __future__ import annotations

import copy
from typing import Any

from distillery.operator.render import Placement

ANNOTATION_LOOP = "annotation-shards"
"""``dsl.ParallelFor(name=...)`` of ``pipelines/annotation.py``."""
STUDENT_PIPELINE = "comp-distillation"
"""The compiled component of ``pipelines/distillation.py``: its tasks are the student steps."""


class PlacementError(ValueError):
    """The compiled pipeline lacks what a placement setting edits (the pipeline changed without this module)."""


def _components(spec: dict[str, Any]) -> dict[str, Any]:
    return dict(spec.get("components", {}))


def student_executors(spec: dict[str, Any]) -> list[str]:
    """The executor labels of the student steps (the tasks of the distillation sub-pipeline)."""
    comps = _components(spec)
    dag = comps.get(STUDENT_PIPELINE, {}).get("dag", {}).get("tasks", {})
    labels = [comps[t["componentRef"]["name"]].get("executorLabel") for t in dag.values()]
    if not dag or not all(labels):
        raise PlacementError(f"the compiled pipeline has no {STUDENT_PIPELINE} sub-pipeline of container steps")
    return sorted(str(label) for label in labels)


def set_parallelism(spec: dict[str, Any], limit: int) -> int:
    """Set the annotation loop's limit in every DAG that holds it; returns how many loops were set."""
    found = 0
    dags = [c.get("dag", {}) for c in _components(spec).values()] + [spec.get("root", {}).get("dag", {})]
    for dag in dags:
        for task in dag.get("tasks", {}).values():
            if task.get("taskInfo", {}).get("name") == ANNOTATION_LOOP and "iteratorPolicy" in task:
                task["iteratorPolicy"]["parallelismLimit"] = limit
                found += 1
    if not found:
        raise PlacementError(f"the compiled pipeline has no ParallelFor named {ANNOTATION_LOOP!r}")
    return found


def off_gpu(spec: dict[str, Any], platform: dict[str, Any] | None, executors: list[str]) -> None:
    """Remove the GPU request (pipeline spec) and the GPU node selector and toleration (Kubernetes platform
    spec) of ``executors``."""
    execs = spec.get("deploymentSpec", {}).get("executors", {})
    k8s = ((platform or {}).get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {})
           .get("executors", {}))
    for label in executors:
        execs[label].get("container", {}).get("resources", {}).pop("accelerator", None)
        settings = k8s.get(label, {})
        settings.pop("nodeSelector", None)
        settings["tolerations"] = [t for t in settings.get("tolerations", []) if "gpu" not in str(t.get("key"))]
        if not settings["tolerations"]:
            settings.pop("tolerations")
        if not settings:  # nothing left for Kubernetes: no entry rather than an empty one
            k8s.pop(label, None)


def apply(docs: list[dict[str, Any]], placement: Placement) -> list[dict[str, Any]]:
    """The compiled documents (pipeline spec, then the optional platform spec) laid out as ``placement`` says."""
    out = copy.deepcopy(docs)
    spec, platform = out[0], (out[1] if len(out) > 1 else None)
    set_parallelism(spec, placement.parallelism)
    if not placement.gpu:
        off_gpu(spec, platform, student_executors(spec))
    return out
