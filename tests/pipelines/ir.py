"""Walking compiled KFP IR YAML: tasks of every DAG, executors, the Kubernetes platform section."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml


def load(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pipeline spec, kubernetes platform spec) of a compiled file; the sdkVersion line is dropped."""
    docs = list(yaml.safe_load_all(Path(path).read_text(encoding="utf-8")))
    spec = docs[0]
    spec.pop("sdkVersion", None)
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if len(docs) > 1 else {}
    return spec, platform


def tasks(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(dag, task name, task) of the root DAG and every component DAG (nested pipelines, If, ParallelFor)."""
    yield from (("root", n, t) for n, t in spec["root"]["dag"]["tasks"].items())
    for cname, comp in spec["components"].items():
        for n, t in comp.get("dag", {}).get("tasks", {}).items():
            yield cname, n, t


def executor_of(spec: dict[str, Any], task: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    label = spec["components"][task["componentRef"]["name"]].get("executorLabel")
    if label is None:
        return None
    return label, spec["deploymentSpec"]["executors"][label]["container"]


def without_sdk_version(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("sdkVersion:"))
