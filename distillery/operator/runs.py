"""Submitting a ``DistillationRun``'s pipeline exactly once, through a pipeline backend.

The backend is a protocol so that this module needs no ``kfp`` (the layering keeps ``kfp`` in
``components/`` and ``pipelines/``); ``pipelines/kfp_backend.py`` implements it with ``kfp.Client``.

Idempotence rests on two facts, either of which suffices: the run id is written to ``status.runId``
as soon as it is known, and the run's display name is derived from the CR's uid
(:func:`distillery.operator.render.run_name`). A restarted operator that finds no ``runId`` in the
status (it died between submitting and patching) looks the name up before submitting again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from distillery.operator.render import pipeline_arguments
from distillery.operator.spec import DistillationRunSpec
from distillery.operator.status import RunSnapshot


class BackendUnavailable(RuntimeError):
    """The pipeline service cannot be reached or refused the call; the operator retries later."""


class PipelineBackend(Protocol):
    """What the operator needs of Kubeflow Pipelines."""

    def find_run(self, name: str) -> str | None:
        """The id of the run with display name ``name``, if one exists."""
        ...

    def submit(self, name: str, experiment: str, arguments: Mapping[str, Any]) -> str:
        """Compile (once) and submit the end-to-end pipeline; returns the new run's id."""
        ...

    def get_run(self, run_id: str) -> RunSnapshot:
        ...


def ensure_submitted(backend: PipelineBackend, spec: DistillationRunSpec, name: str,
                     status: Mapping[str, Any]) -> tuple[str, bool]:
    """The run id for this CR, submitting only if no run exists yet; returns (run id, adopted)."""
    known = status.get("runId")
    if known:
        return str(known), True
    found = backend.find_run(name)
    if found:
        return found, True
    return backend.submit(name, spec.experiment, pipeline_arguments(spec)), False
