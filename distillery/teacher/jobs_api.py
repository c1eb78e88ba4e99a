"""Create, await and delete a teacher training job through the Kubernetes API (the ``kubernetes`` client).

The job is a custom resource (``TrainJob`` or ``PyTorchJob``, rendered by :mod:`distillery.teacher.jobs`); its
status conditions say how it ends: ``Complete`` (TrainJob) or ``Succeeded`` (PyTorchJob) is success, ``Failed``
is failure, whose reason and message become a one-line :class:`JobError`.  The step polls with a backoff
(a quarter of ``poll_s`` doubling up to ``poll_s``: quick for short jobs, light for day-long ones) and prints one
line per condition change, with a progress bar where the Trainer reports ``trainerStatus.progressPercentage``.

    from distillery.teacher.jobs_api import await_job, create_job, custom_objects_api
    api = custom_objects_api()               # in-cluster service account, else ~/.kube/config
    create_job(api, manifest)
    await_job(api, manifest, timeout_s=3600)  # raises JobError naming the job and its failing condition
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

SUCCESS = ("Complete", "Succeeded")
FAILURE = ("Failed",)


class JobError(RuntimeError):
    """A cluster job could not be created, failed, vanished or timed out; the message names the job."""


def custom_objects_api(kubeconfig: str | None = None) -> Any:
    """A ``CustomObjectsApi``: the pod's service account in a cluster, else ``kubeconfig`` / ``$KUBECONFIG``."""
    from kubernetes import client, config

    if kubeconfig is None:
        try:
            config.load_incluster_config()
            return client.CustomObjectsApi()
        except config.ConfigException:
            pass
    return client.CustomObjectsApi(config.new_client_from_config(config_file=kubeconfig))


def _coords(manifest: dict[str, Any]) -> tuple[str, str, str, str, str]:
    """(group, version, namespace, plural, name) of a rendered job."""
    from distillery.teacher.jobs import KINDS

    group, version = manifest["apiVersion"].split("/")
    (plural,) = [k[2] for k in KINDS.values() if k[0] == group and k[3] == manifest["kind"]]
    meta = manifest["metadata"]
    return group, version, meta["namespace"], plural, meta["name"]


def _label(manifest: dict[str, Any]) -> str:
    return f"{manifest['kind']}/{manifest['metadata']['name']} (namespace {manifest['metadata']['namespace']})"


def _explain(exc: Any, manifest: dict[str, Any], action: str) -> JobError:
    """An ``ApiException`` as one line a person can act on."""
    status, reason = getattr(exc, "status", None), getattr(exc, "reason", "") or ""
    where = f"{action} {_label(manifest)}"
    if status == 404:
        return JobError(f"{where}: the cluster serves no {manifest['apiVersion']} {manifest['kind']} in that "
                        "namespace (is Kubeflow Trainer v2 or the Training Operator installed?)")
    if status == 403:
        return JobError(f"{where}: forbidden; the step's service account needs the distillery-teacher-jobs role "
                        "(manifests/base/rbac.yaml)")
    body = " ".join(str(getattr(exc, "body", "") or "").split())[:300]
    return JobError(f"{where}: HTTP {status} {reason}: {body}")


def create_job(api: Any, manifest: dict[str, Any]) -> dict[str, Any]:
    """Create the job; a missing API, missing RBAC or a rejected spec is a one-line :class:`JobError`."""
    from kubernetes.client.exceptions import ApiException

    group, version, namespace, plural, _ = _coords(manifest)
    try:
        return dict(api.create_namespaced_custom_object(group, version, namespace, plural, manifest))
    except ApiException as exc:
        raise _explain(exc, manifest, "create") from None


def delete_job(api: Any, manifest: dict[str, Any]) -> None:
    """Delete the job and (in the background) its pods; an already missing job is fine."""
    from kubernetes.client.exceptions import ApiException

    group, version, namespace, plural, name = _coords(manifest)
    try:
        api.delete_namespaced_custom_object(group, version, namespace, plural, name,
                                            propagation_policy="Background")
    except ApiException as exc:
        if exc.status != 404:
            raise _explain(exc, manifest, "delete") from None


def _conditions(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in (obj.get("status") or {}).get("conditions") or [] if isinstance(c, dict)]


def _line(cond: dict[str, Any]) -> str:
    text = " ".join(f"{cond.get('reason') or ''}: {cond.get('message') or ''}".split())
    return f"{cond.get('type')}={cond.get('status')} {text}".strip()


def _outcome(obj: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """("ok" | "failed", the deciding condition), or None while the job runs."""
    for cond in _conditions(obj):
        if cond.get("status") == "True" and cond.get("type") in FAILURE:
            return "failed", cond
    for cond in _conditions(obj):
        if cond.get("status") == "True" and cond.get("type") in SUCCESS:
            return "ok", cond
    return None


def _fetch(api: Any, manifest: dict[str, Any]) -> dict[str, Any]:
    from kubernetes.client.exceptions import ApiException

    group, version, namespace, plural, name = _coords(manifest)
    try:
        return dict(api.get_namespaced_custom_object(group, version, namespace, plural, name))
    except ApiException as exc:
        if exc.status == 404:
            raise JobError(f"{_label(manifest)} was deleted before it finished") from None
        raise _explain(exc, manifest, "read") from None


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM (a cancelled KFP run deletes the step's pod) as ``SystemExit``, so that cleanup code runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def await_job(api: Any, manifest: dict[str, Any], *, timeout_s: float, poll_s: float = 5.0) -> dict[str, Any]:
    """Wait until the job succeeds (returns it) or fails (:class:`JobError` with its condition's message; the
    failed job stays for its logs); after ``timeout_s``, or when the step itself is stopped, the job is deleted."""
    try:
        with _sigterm_raises():
            return _await(api, manifest, timeout_s, poll_s)
    except (KeyboardInterrupt, SystemExit):
        delete_job(api, manifest)  # a cancelled step must not leave a job holding GPUs
        raise


def _await(api: Any, manifest: dict[str, Any], timeout_s: float, poll_s: float) -> dict[str, Any]:
    from tqdm import tqdm

    deadline, delay, seen = time.monotonic() + timeout_s, poll_s / 4, set()
    bar = tqdm(total=100, desc=manifest["metadata"]["name"], unit="%", leave=False)
    try:
        while True:
            obj = _fetch(api, manifest)
            for cond in _conditions(obj):
                if (line := _line(cond)) not in seen:
                    seen.add(line)
                    tqdm.write(f"{_label(manifest)}: {line}")
            progress = ((obj.get("status") or {}).get("trainerStatus") or {}).get("progressPercentage")
            if isinstance(progress, int):
                bar.update(progress - bar.n)
            if (outcome := _outcome(obj)) is not None:
                verdict, cond = outcome
                if verdict == "ok":
                    return obj
                raise JobError(f"{_label(manifest)} failed: {_line(cond)}")
            if time.monotonic() >= deadline:
                delete_job(api, manifest)
                raise JobError(f"{_label(manifest)} did not finish within teacher.launch.timeout_s={timeout_s:g}; "
                               "deleted it")
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, poll_s)
    finally:
        bar.close()
