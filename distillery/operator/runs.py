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

from distillery.operator.render import Placement, pipeline_arguments, placement
from distillery.operator.spec import DistillationRunSpec
from distillery.operator.status import RunSnapshot


class BackendUnavailable(RuntimeError):
    """The pipeline service cannot be reached or refused the call; the operator retries later."""


class PipelineBackend(Protocol):
    """What the operator needs of Kubeflow Pipelines."""

    def find_run(self, name: str) -> str | None:
        """The id of the run with display name ``name``, if one exists."""
        ...

    def submit(self, name: str, experiment: str, arguments: Mapping[str, Any], placement: Placement) -> str:
        """Compile (once) and submit the end-to-end pipeline with ``arguments`` (each a parameter it declares),
        laid out as ``placement`` says; returns the new run's id."""
        ...

    def get_run(self, run_id: str) -> RunSnapshot:
        ...


def ensure_submitted(backend: PipelineBackend, spec: DistillationRunSpec, name: str,
                     status: Mapping[str, Any], serving_uri: str = "", champion: str = "") -> tuple[str, bool]:
    """The run id for this CR, submitting only if no run exists yet; returns (run id, adopted).  The run
    publishes into ``serving_uri`` (if it beats ``champion``) under its own name as the version's label."""
    known = status.get("runId")
    if known:
        return str(known), True
    found = backend.find_run(name)
    if found:
        return found, True
    arguments = pipeline_arguments(spec, serving_uri, champion, run_label=name)
    return backend.submit(name, spec.experiment, arguments, placement(spec)), False
