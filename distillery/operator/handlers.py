"""kopf handlers: thin adapters from Kubernetes events to the pure logic of this package.

    kopf run --standalone --namespace=relevance-distillery -m pipelines.operator

``pipelines/operator.py`` is kopf's entry module: it imports these handlers and injects the KFP pipeline
backend (:func:`use_backend`), so this package never imports ``pipelines/`` (which imports it).
A bad spec → ``kopf.PermanentError`` (and ``status.phase: Invalid`` naming the field); a dependency
that is not ready (KFP unreachable, no metrics yet) → ``kopf.TemporaryError`` with a delay.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import kopf
import kubernetes

from distillery.export.champion import PromotionError, promote_version
from distillery.operator import render, repository, rollout
from distillery.operator.analysis import Analysis, GateStateError, MetricsSourceError, analyse
from distillery.operator.results import MetricsUnavailable, read_final_metrics
from distillery.operator.runs import BackendUnavailable, PipelineBackend, ensure_submitted
from distillery.operator.settings import OperatorSettings
from distillery.operator.spec import (
    GROUP,
    VERSION,
    DistillationRunSpec,
    RelevanceExperimentSpec,
    SpecError,
    parse_distillation_run,
    parse_relevance_experiment,
)
from distillery.operator.status import (
    TERMINAL_PHASES,
    invalid_status,
    metrics_status,
    run_status,
    submitted_status,
)

SETTINGS = OperatorSettings.from_env()
RUNS = (GROUP, VERSION, "distillationruns")
EXPERIMENTS = (GROUP, VERSION, "relevanceexperiments")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


BackendFactory = Callable[[OperatorSettings], PipelineBackend]
_backend_factory: list[BackendFactory] = []


def use_backend(factory: BackendFactory) -> None:
    """Inject the pipeline backend, before kopf starts: ``factory(SETTINGS)`` is built on the first submission."""
    _backend_factory[:] = [factory]
    backend.cache_clear()


@functools.cache
def backend() -> PipelineBackend:
    if not _backend_factory:
        raise RuntimeError("no pipeline backend was injected: start the operator with "
                           "`kopf run -m pipelines.operator` (it calls distillery.operator.handlers.use_backend)")
    return _backend_factory[0](SETTINGS)


@functools.cache
def core_api() -> kubernetes.client.CoreV1Api:
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    return kubernetes.client.CoreV1Api()


def _invalid(exc: SpecError, patch: kopf.Patch) -> kopf.PermanentError:
    # the status is the resource's own, so it names the field alone; the operator's log names the resource too
    patch.status.update(invalid_status(f"{exc.field}: {exc.message}", _now()))
    return kopf.PermanentError(f"invalid spec: {exc}")


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = logging.WARNING
    # Least privilege: the Role grants no cluster-wide reads, so kopf must not list or watch namespaces
    # and CRDs (it would retry 403s for a minute); the namespace comes from --namespace.
    settings.scanning.disabled = True


@kopf.on.resume(*RUNS)
@kopf.on.create(*RUNS)
def submit_run(spec: kopf.Spec, status: kopf.Status, name: str, namespace: str | None, uid: str, body: kopf.Body,
               patch: kopf.Patch, **_: Any) -> None:
    """Submit the pipeline once (or find the run an earlier operator submitted)."""
    if status.get("phase") in TERMINAL_PHASES:
        return
    try:
        cr = f"DistillationRun {namespace}/{name}"
        run = parse_distillation_run(spec, cr)
        render.pipeline_config(run, cr)
    except SpecError as exc:
        raise _invalid(exc, patch) from exc
    run_name = render.run_name(namespace or "", name, uid)
    deployment = {} if status.get("runId") else _deployment(run, patch)
    try:
        run_id, adopted = ensure_submitted(backend(), run, run_name, status, deployment.get("repository", ""),
                                           deployment.get("champion", ""))
    except BackendUnavailable as exc:
        raise kopf.TemporaryError(str(exc), delay=SETTINGS.retry_s) from exc
    if not status.get("runId"):
        patch.status.update({**submitted_status(run_id, run_name, adopted, _now()), "deployment": deployment})
        kopf.info(body, reason="Adopted" if adopted else "Submitted", message=f"KFP run {run_id} ({run_name})")


def _deployment(run: DistillationRunSpec, patch: kopf.Patch) -> dict[str, str]:
    """Where the run publishes (``spec.serving.repository`` or the operator's default) and the champion serving
    there now, which the new student must match; an unreadable repository is waited for."""
    repo = render.serving_repository(run, SETTINGS.serving_repository)
    if not repo:
        return {"repository": "", "champion": "", "note": "no serving repository: the run deploys nothing"}
    try:
        champion, note = repository.champion_student(repository.read_manifest(repo))
    except repository.RepositoryUnavailable as exc:
        patch.status["message"] = f"waiting for the serving repository: {exc}"
        raise kopf.TemporaryError(str(exc), delay=SETTINGS.retry_s) from exc
    return {"repository": repo, "champion": champion, "note": note}


def _published(status: kopf.Status) -> dict[str, Any]:
    """``status.published`` of a succeeded run, read back from the serving repository by the run's name."""
    repo = str((status.get("deployment") or {}).get("repository") or "")
    try:
        manifest = repository.read_manifest(repo) if repo else None
    except repository.RepositoryUnavailable as exc:
        raise kopf.TemporaryError(f"published version: {exc}", delay=SETTINGS.retry_s) from exc
    return repository.published_status(repo, repository.published(manifest, str(status.get("runName") or "")))


@kopf.timer(*RUNS, interval=SETTINGS.poll_s, initial_delay=SETTINGS.poll_s,
            when=lambda status, **_: bool(status.get("runId")) and status.get("phase") not in TERMINAL_PHASES)
def poll_run(spec: kopf.Spec, status: kopf.Status, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Mirror the KFP run into the status and its conditions; on success, add the final metrics."""
    try:
        snap = backend().get_run(str(status["runId"]))
    except BackendUnavailable as exc:
        raise kopf.TemporaryError(str(exc), delay=SETTINGS.retry_s) from exc
    new = run_status(snap, status, _now())
    if new["phase"] == "Succeeded":
        try:
            metrics = read_final_metrics(parse_distillation_run(spec).output_uri)
        except (MetricsUnavailable, SpecError) as exc:
            raise kopf.TemporaryError(f"final metrics: {exc}", delay=SETTINGS.retry_s) from exc
        new = {**metrics_status(new, metrics, _now()), "published": _published(status)}
    patch.status.update(new)
    if new["phase"] != status.get("phase") and new["phase"] in TERMINAL_PHASES:
        (kopf.info if new["phase"] == "Succeeded" else kopf.warn)(body, reason=new["phase"], message=new["message"])


def write_split(namespace: str, name: str, uid: str, exp: RelevanceExperimentSpec,
                state: rollout.RolloutState) -> dict[str, int]:
    """Create or update the splitter's ConfigMap for ``state``; returns the weights written."""
    w = render.weights(exp, state.step, state.phase)
    cm = render.splitter_configmap(namespace, name, uid, exp, state.champion, w)
    api = core_api()
    try:
        api.patch_namespaced_config_map(exp.config_map, namespace, {"metadata": cm["metadata"], "data": cm["data"]})
    except kubernetes.client.ApiException as exc:
        if exc.status != 404:
            raise kopf.TemporaryError(f"ConfigMap {exp.config_map}: {exc.reason}", delay=SETTINGS.retry_s) from exc
        api.create_namespaced_config_map(namespace, cm)
    return w


@kopf.on.resume(*EXPERIMENTS)
@kopf.on.create(*EXPERIMENTS)
def start_experiment(spec: kopf.Spec, status: kopf.Status, name: str, namespace: str | None, uid: str,
                     body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Write the first traffic step into the splitter (or re-write the recorded one on resume)."""
    try:
        exp = parse_relevance_experiment(spec, f"RelevanceExperiment {namespace}/{name}")
    except SpecError as exc:
        raise _invalid(exc, patch) from exc
    state = rollout.state_from_status(status, exp, _now())
    w = write_split(namespace or "", name, uid, exp, state)
    patch.status.update({**state.to_status(), "weights": w})
    if not status.get("phase"):
        kopf.info(body, reason="Started", message=f"challenger {exp.challenger.model} v{exp.challenger.version} "
                                                  f"at {w['challenger']}% of users")


def _look(exp: RelevanceExperimentSpec, weights: dict[str, int], state: rollout.RolloutState, status: kopf.Status,
          body: kopf.Body, patch: kopf.Patch) -> Analysis:
    """One look of the gate, continuing the sequential test recorded in ``status.gate`` (it survives restarts)."""
    try:
        try:
            return analyse(exp.gate, exp.metrics_uri, weights, state.step_started, status.get("gate"))
        except GateStateError as exc:
            # A record this gate cannot continue (spec.gate.alpha edited, a corrupt status) cannot heal by
            # retrying: this step's test starts afresh, which can only delay a decision, and says so.
            kopf.warn(body, reason="GateStateReset", message=str(exc))
            return analyse(exp.gate, exp.metrics_uri, weights, state.step_started)
    except MetricsSourceError as exc:
        patch.status["message"] = f"waiting for metrics: {exc}"
        raise kopf.TemporaryError(str(exc), delay=SETTINGS.retry_s) from exc


def _promote_in_repository(exp: RelevanceExperimentSpec, patch: kopf.Patch) -> None:
    """Make the challenger the repository's champion before the split and status say so (a retry is safe)."""
    from distillery.storage import StorageError

    repo = exp.serving_uri or SETTINGS.serving_repository
    try:
        if not repo:
            raise PromotionError("no model repository: set spec.serving.repository or DISTILLERY_SERVING_REPOSITORY")
        promote_version(repo, exp.challenger.version, exp.challenger.model)
    except (PromotionError, StorageError, OSError) as exc:
        patch.status["message"] = f"promotion waits for the model repository: {exc}"
        raise kopf.TemporaryError(f"promotion: {exc}", delay=SETTINGS.retry_s) from exc


@kopf.timer(*EXPERIMENTS, interval=SETTINGS.tick_s,
            when=lambda status, **_: status.get("phase") == "Progressing")
def analyse_experiment(spec: kopf.Spec, status: kopf.Status, name: str, namespace: str | None, uid: str,
                       body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """When an analysis is due: run the gate, step the traffic, promote (repository, then splitter) or roll back."""
    try:
        exp = parse_relevance_experiment(spec, f"RelevanceExperiment {namespace}/{name}")
    except SpecError as exc:
        raise _invalid(exc, patch) from exc
    now = _now()
    state = rollout.state_from_status(status, exp, now)
    if not rollout.analysis_due(exp, state, now):
        return
    weights = render.weights(exp, state.step, state.phase)
    result = _look(exp, weights, state, status, body, patch)
    t = rollout.step(exp, state, result.decision, result.reason, now)
    if t.decision == "promote":
        _promote_in_repository(exp, patch)
    moved = render.weights(exp, t.state.step, t.state.phase) != weights or t.state.champion != state.champion
    w = write_split(namespace or "", name, uid, exp, t.state) if moved else weights
    patch.status.update({**t.state.to_status(), "weights": w, "decision": t.decision,
                         "latestAnalysis": result.to_status(now), "message": t.event[2],
                         "conditions": t.conditions(list(status.get("conditions") or []), now),
                         **({"gate": result.gate_state} if result.gate_state else {})})
    kopf.event(body, type=t.event[0], reason=t.event[1], message=t.event[2])


@kopf.on.delete(*EXPERIMENTS, optional=True)
def stop_experiment(spec: kopf.Spec, status: kopf.Status, name: str, namespace: str | None, uid: str,
                    **_: Any) -> None:
    """Deleting a running experiment hands all traffic back to the champion."""
    if status.get("phase") != "Progressing":
        return
    try:
        exp = parse_relevance_experiment(spec)
    except SpecError:
        return  # it never wrote a split
    state = rollout.state_from_status(status, exp, _now())
    write_split(namespace or "", name, uid, exp, dataclasses.replace(state, phase="RolledBack"))
