"""The operator's pipeline backend: compile the end-to-end pipeline and drive it with ``kfp.Client``.

It lives in ``pipelines/`` because ``kfp`` may only be imported here and in ``components/``; the
operator (``distillery/operator/handlers.py``) uses it through the ``PipelineBackend`` protocol of
``distillery.operator.runs`` and never imports it: ``pipelines/operator.py``, kopf's entry module, injects it.
The pipeline is compiled once per process, on the first submission; each run's placement (GPU for the
student steps, annotation parallelism) is applied to a copy of it (``pipelines/placement.py``).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from distillery.operator.render import Placement
from distillery.operator.runs import BackendUnavailable
from distillery.operator.settings import OperatorSettings
from distillery.operator.status import RunSnapshot
from pipelines import placement as layout


def compile_end_to_end(path: Path) -> set[str]:
    """Compile the end-to-end pipeline to ``path``; returns the names of its parameters."""
    from kfp import compiler

    from pipelines.end_to_end import relevance_distillery

    compiler.Compiler().compile(relevance_distillery, str(path))
    # The file holds the pipeline spec, then (with kfp-kubernetes settings) a platform spec.
    spec = next(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    return set(spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {}))


class KfpBackend:
    """``PipelineBackend`` over the KFP v2 REST API (``kfp.Client``)."""

    def __init__(self, settings: OperatorSettings) -> None:
        import kfp

        self.settings = settings
        try:
            self.client = kfp.Client(host=settings.kfp_host, existing_token=settings.kfp_token,
                                     namespace=settings.kfp_namespace or "kubeflow")
        except Exception as exc:  # kfp wraps connection errors in many types
            raise BackendUnavailable(f"KFP at {settings.kfp_host}: {exc}") from exc
        self._package: Path | None = None
        self._params: set[str] = set()

    def _compiled(self) -> Path:
        if self._package is None:
            path = Path(tempfile.mkdtemp(prefix="distillery-pipeline-")) / "end-to-end.yaml"
            self._params = compile_end_to_end(path)
            self._package = path
        return self._package

    def find_run(self, name: str) -> str | None:
        flt = {"predicates": [{"key": "display_name", "operation": "EQUALS", "string_value": name}]}
        try:
            resp = self.client.list_runs(filter=json.dumps(flt), namespace=self.settings.kfp_namespace, page_size=5)
        except Exception as exc:
            raise BackendUnavailable(f"KFP at {self.settings.kfp_host}: listing runs failed: {exc}") from exc
        runs = [r for r in (resp.runs or []) if r.display_name == name]
        return str(runs[0].run_id) if runs else None

    def package(self, placement: Placement) -> Path:
        """The compiled pipeline laid out as ``placement`` says, written beside the compiled one."""
        compiled = self._compiled()
        docs = [d for d in yaml.safe_load_all(compiled.read_text(encoding="utf-8")) if d]
        path = compiled.with_name(f"end-to-end-gpu{int(placement.gpu)}-par{placement.parallelism}.yaml")
        path.write_text(yaml.safe_dump_all(layout.apply(docs, placement), sort_keys=False), encoding="utf-8")
        return path

    def submit(self, name: str, experiment: str, arguments: Mapping[str, Any], placement: Placement) -> str:
        package = self.package(placement)
        unknown = sorted(set(arguments) - self._params)
        if unknown:  # the operator and the pipeline disagree: submitting would silently drop a setting
            raise ValueError(f"the end-to-end pipeline declares no parameter(s) {unknown}")
        root = str(arguments["output_uri"]).rstrip("/") + "/kfp" if arguments.get("output_uri") else None
        try:
            result = self.client.create_run_from_pipeline_package(
                str(package), arguments=dict(arguments), run_name=name, experiment_name=experiment,
                namespace=self.settings.kfp_namespace, pipeline_root=root)
        except Exception as exc:
            raise BackendUnavailable(f"KFP at {self.settings.kfp_host}: submitting {name} failed: {exc}") from exc
        return str(result.run_id)

    def get_run(self, run_id: str) -> RunSnapshot:
        try:
            run = self.client.get_run(run_id)
        except Exception as exc:
            raise BackendUnavailable(f"KFP at {self.settings.kfp_host}: reading run {run_id} failed: {exc}") from exc
        details = getattr(run, "run_details", None)
        tasks = {str(t.display_name): str(t.state or "PENDING")
                 for t in (getattr(details, "task_details", None) or []) if t.display_name}
        error = getattr(run, "error", None)
        message = str(getattr(error, "message", "") or "") if error else ""
        return RunSnapshot(run_id=run_id, state=str(run.state or "PENDING"), tasks=tasks, error=message)
