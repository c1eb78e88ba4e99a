"""The teacher's training steps as Kubeflow jobs: a Trainer v2 ``TrainJob`` or a Training Operator ``PyTorchJob``.

With ``teacher.launch.launcher=trainjob|pytorchjob`` a pipeline step does not train in its own pod: it stages its
inputs in the artifact store, creates a job of ``num_nodes`` pods × ``procs_per_node`` processes, waits for it and
brings the trained model back into its KFP output artifact (:func:`run_cluster_job`).

How the data travels (the job's pods share no disk with the step)::

    step pod                     S3: {teacher.launch.staging_uri}/{job}/            job pods (every node)
    data_dir, base, reward_dir ──▶ inputs/{data,base,reward}/ ──────────────────▶ /scratch/inputs/…
                                                                                torchrun (teacher worker)
    model_dir, out_dir ◀────────── output/model/, output/training/ ◀────────────── /scratch/output/ (node 0)

Every pod runs ``python -m distillery.teacher.jobs_pod`` (:mod:`distillery.teacher.jobs_pod`), which downloads
the inputs, starts ``torchrun`` on the node (node rank and master address from the ``PET_*`` / ``MASTER_*``
variables both operators set) and, on node 0, uploads the model.  The job's manifest is a pure function of the
step, the config and the staging URIs (:func:`render_job`), so it is validated against the real CRD schemas in
the tests; creating and awaiting it is :mod:`distillery.teacher.jobs_api`.

    from distillery.teacher.jobs import render_job
    manifest = render_job("sft", cfg, name="distillery-teacher-sft-1a2b3c4d", namespace="team",
                          staging="s3://distillery-runs/teacher-jobs/distillery-teacher-sft-1a2b3c4d",
                          inputs={"data": "s3://distillery-runs/datasets/esci", "base": "s3://models/sft"})
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from distillery.config import Config
from distillery.images import TRAINER_IMAGE
from distillery.storage import SECRET, SECRET_ENV

log = logging.getLogger(__name__)

TRAINJOB = ("trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob")
PYTORCHJOB = ("kubeflow.org", "v1", "pytorchjobs", "PyTorchJob")
KINDS = {"trainjob": TRAINJOB, "pytorchjob": PYTORCHJOB}
"""launcher → (API group, version, plural, kind)."""

STEPS = ("dapt", "sft", "reward", "dpo")
GPU_RESOURCE = "nvidia.com/gpu"
GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
SCRATCH = "/scratch"
"""An emptyDir on every pod: inputs, outputs and caches (the image's root filesystem stays read-only)."""
TRAINJOB_CONTAINER = "node"
"""The container (and replicated job) of the ``torch-distributed`` runtime that ``spec.trainer`` fills in."""
PYTORCHJOB_CONTAINER = "pytorch"
"""The container name the Training Operator looks for (its port and environment go there)."""
LABEL = "distillery.relevance.dev/teacher-step"


def job_name(step: str) -> str:
    """A fresh name: RFC 1035, ≤ 63 characters (TrainJob's CEL rules), unique per pipeline attempt."""
    return f"distillery-teacher-{step}-{uuid.uuid4().hex[:8]}"


def pod_args(step: str, cfg: Config, staging: str, inputs: Mapping[str, str]) -> list[str]:
    """The arguments of ``python -m distillery.teacher.jobs_pod`` (its ``parse_args`` reads exactly these).

    ``inputs`` maps ``data`` / ``base`` / ``reward`` to what the pods read: an ``s3://`` URI (downloaded on every
    node) or a value passed on as it is (a data spec such as ``synthetic:3000``)."""
    launch = cfg.teacher.launch
    args = ["--step", step, "--staging", staging]
    for key, value in inputs.items():
        args += ["--input", f"{key}={value}"]
    return [*args, "--nnodes", str(launch.num_nodes), "--nproc-per-node", str(launch.procs_per_node),
            "--config-json", json.dumps(cfg.to_dict(), sort_keys=True, separators=(",", ":"))]


def _env() -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": var, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": key, **({"optional": True} if opt
                                                                                      else {})}}}
        for var, key, opt in SECRET_ENV]
    # HOME and the caches on the scratch volume: the image runs as an arbitrary non-root user.
    env += [{"name": "HOME", "value": SCRATCH}, {"name": "DISTILLERY_CACHE", "value": f"{SCRATCH}/cache"},
            {"name": "HF_HOME", "value": f"{SCRATCH}/hf"}, {"name": "TMPDIR", "value": SCRATCH},
            {"name": "PYTHONUNBUFFERED", "value": "1"}]
    return env


def _resources(cfg: Config) -> dict[str, Any]:
    launch = cfg.teacher.launch
    requests: dict[str, Any] = {"cpu": launch.cpu_per_node, "memory": launch.memory_per_node}
    limits: dict[str, Any] = {"memory": launch.memory_per_node}
    if launch.gpu:
        requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = str(launch.procs_per_node)
    return {"requests": requests, "limits": limits}


POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                      "capabilities": {"drop": ["ALL"]}}


def _pod_extras(cfg: Config) -> dict[str, Any]:
    """Pod-level settings shared by both kinds: non-root, scratch volume, GPU pool, no API token."""
    extras: dict[str, Any] = {"securityContext": POD_SECURITY,
                              # torch's shared-memory tensors need more than the 64 MiB a container gets.
                              "volumes": [{"name": "scratch", "emptyDir": {}},
                                          {"name": "dshm", "emptyDir": {"medium": "Memory"}}]}
    if cfg.teacher.launch.gpu:
        extras["nodeSelector"] = GPU_NODE_SELECTOR
        extras["tolerations"] = [GPU_TOLERATION]
    return extras


MOUNTS = [{"name": "scratch", "mountPath": SCRATCH}, {"name": "dshm", "mountPath": "/dev/shm"}]
COMMAND = ["python", "-m", "distillery.teacher.jobs_pod"]


def _metadata(step: str, name: str, namespace: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "relevance-distillery",
                       "app.kubernetes.io/component": "teacher-training", LABEL: step}}


def render_trainjob(step: str, cfg: Config, *, name: str, namespace: str, staging: str, inputs: Mapping[str, str],
                    image: str) -> dict[str, Any]:
    """A Kubeflow Trainer v2 ``TrainJob`` on ``teacher.launch.runtime``; pod settings go through runtimePatches."""
    launch = cfg.teacher.launch
    pod = {**_pod_extras(cfg), "containers": [{"name": TRAINJOB_CONTAINER, "securityContext": CONTAINER_SECURITY,
                                               "volumeMounts": MOUNTS}]}
    patch = {"manager": "distillery.relevance.dev/teacher-jobs", "trainingRuntimeSpec": {"template": {"spec": {
        "replicatedJobs": [{"name": TRAINJOB_CONTAINER, "template": {"spec": {"template": {"spec": pod}}}}]}}}}
    return {
        "apiVersion": f"{TRAINJOB[0]}/{TRAINJOB[1]}", "kind": TRAINJOB[3], "metadata": _metadata(step, name, namespace),
        "spec": {
            "runtimeRef": {"name": launch.runtime},
            # The API server's own deadline as well as the step's: a step that dies cannot leave GPUs busy.
            "activeDeadlineSeconds": launch.timeout_s,
            "trainer": {"image": image, "command": COMMAND, "args": pod_args(step, cfg, staging, inputs),
                        "env": _env(), "numNodes": launch.num_nodes, "numProcPerNode": launch.procs_per_node,
                        "resourcesPerNode": _resources(cfg)},
            "runtimePatches": [patch],
        },
    }


def _replica(cfg: Config, replicas: int, args: list[str], image: str) -> dict[str, Any]:
    container = {"name": PYTORCHJOB_CONTAINER, "image": image, "command": COMMAND, "args": args, "env": _env(),
                 "resources": _resources(cfg), "securityContext": CONTAINER_SECURITY, "volumeMounts": MOUNTS,
                 "ports": [{"name": "pytorchjob-port", "containerPort": 23456}]}
    return {"replicas": replicas, "restartPolicy": "Never",
            "template": {"spec": {**_pod_extras(cfg), "automountServiceAccountToken": False,
                                  "containers": [container]}}}


def render_pytorchjob(step: str, cfg: Config, *, name: str, namespace: str, staging: str, inputs: Mapping[str, str],
                      image: str) -> dict[str, Any]:
    """A Training Operator v1 ``PyTorchJob``: one Master and ``num_nodes - 1`` Workers, ``procs_per_node`` each."""
    launch = cfg.teacher.launch
    args = pod_args(step, cfg, staging, inputs)
    replicas = {"Master": _replica(cfg, 1, args, image)}
    if launch.num_nodes > 1:
        replicas["Worker"] = _replica(cfg, launch.num_nodes - 1, args, image)
    return {
        "apiVersion": f"{PYTORCHJOB[0]}/{PYTORCHJOB[1]}", "kind": PYTORCHJOB[3],
        "metadata": _metadata(step, name, namespace),
        "spec": {
            "nprocPerNode": str(launch.procs_per_node),
            # No retries: a failed step fails the pipeline task, which KFP may retry as a whole.
            "runPolicy": {"backoffLimit": 0, "activeDeadlineSeconds": launch.timeout_s, "cleanPodPolicy": "Running"},
            "pytorchReplicaSpecs": replicas,
        },
    }


def render_job(step: str, cfg: Config, *, name: str, namespace: str, staging: str, inputs: Mapping[str, str],
               image: str = "") -> dict[str, Any]:
    """The manifest of ``teacher.launch.launcher`` (``trainjob`` or ``pytorchjob``) for one training step.

    ``staging`` is the job's S3 prefix (inputs under ``inputs/<name>``, the model back under ``output/``);
    ``inputs`` names the staged inputs (``data``, and ``base`` / ``reward`` where the step has them);
    ``image`` defaults to ``teacher.launch.image``, then the project's trainer image."""
    launcher = cfg.teacher.launch.launcher
    if launcher not in KINDS:
        raise ValueError(f"teacher.launch.launcher={launcher!r}: not a cluster launcher (trainjob or pytorchjob)")
    if step not in STEPS:
        raise ValueError(f"teacher step {step!r}: must be one of {', '.join(STEPS)}")
    render = render_trainjob if launcher == "trainjob" else render_pytorchjob
    return render(step, cfg, name=name, namespace=namespace, staging=staging, inputs=inputs,
                  image=image or cfg.teacher.launch.image or TRAINER_IMAGE)


def _namespace(cfg: Config) -> str:
    """``teacher.launch.namespace``, else the step's own (its service account's), else ``default``."""
    if cfg.teacher.launch.namespace:
        return cfg.teacher.launch.namespace
    own = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return own.read_text().strip() if own.exists() else os.environ.get("POD_NAMESPACE", "default")


def stage_inputs(step: str, staging: str, sources: Mapping[str, Any]) -> dict[str, str]:
    """What the pods read for each input: a local directory (or a prepared :class:`Dataset`'s) is uploaded to
    ``{staging}/inputs/<name>``; an ``s3://`` URI or a data spec goes as it is.  A Dataset loaded from a spec in
    this process is refused: its file may be one only this pod can read (``stages.teacher.train`` writes its split
    out first)."""
    from distillery.storage import copy_tree, is_s3

    inputs = {}
    for key, value in sources.items():
        if value is None or value == "":
            continue
        if hasattr(value, "directory"):  # a stages.data.Dataset (the layer above): its prepared directory
            if value.directory is None:
                raise ValueError(f"teacher {step}: {key} {value.name!r} was loaded in this process; write its split "
                                 "to a directory first (the job's pods share no disk with it)")
            value = value.directory
        if not is_s3(value) and Path(value).is_dir():
            uri = f"{staging}/inputs/{key}"
            log.info("teacher %s: staging %s → %s", step, value, uri)
            copy_tree(str(value), uri, progress=True)
            value = uri
        inputs[key] = str(value)
    return inputs


def run_cluster_job(step: str, cfg: Config, data_dir: Any, model_dir: str | Path, out_dir: str | Path | None = None,
                    *, base: str | None = None, reward_dir: str | None = None, api: Any = None,
                    poll_s: float = 5.0) -> dict[str, Any]:
    """Train one teacher step as a cluster job; the model lands in ``model_dir``, ``metrics.json`` and
    ``report.md`` in ``out_dir`` (default: ``model_dir``), as :func:`distillery.stages.teacher.train` writes them.

    Stages the data (a prepared dataset directory, a ``Dataset``, an ``s3://`` URI or a data spec), ``base`` and
    ``reward_dir`` under ``teacher.launch.staging_uri``, creates the job, waits for it
    (:func:`distillery.teacher.jobs_api.await_job`: one line per change, a one-line error naming the job and its
    failing condition; on timeout the job is deleted), then downloads what node 0 uploaded.  Returns the step's
    metrics plus ``job``.  ``api`` is a ``kubernetes.client.CustomObjectsApi`` (default: in-cluster config,
    else the kubeconfig)."""
    from distillery.storage import copy_tree
    from distillery.teacher.jobs_api import await_job, create_job, custom_objects_api

    name = job_name(step)
    staging = f"{cfg.teacher.launch.staging_uri.rstrip('/')}/{name}"
    inputs = stage_inputs(step, staging, {"data": data_dir, "base": base, "reward": reward_dir})
    manifest = render_job(step, cfg, name=name, namespace=_namespace(cfg), staging=staging, inputs=inputs)
    api = api or custom_objects_api()
    create_job(api, manifest)
    await_job(api, manifest, timeout_s=cfg.teacher.launch.timeout_s, poll_s=poll_s)
    # Both downloads are checked file by file against the manifests node 0 uploaded.
    copy_tree(f"{staging}/output/model", str(model_dir), progress=True)
    out = Path(out_dir if out_dir is not None else model_dir)
    copy_tree(f"{staging}/output/training", str(out))
    metrics: dict[str, Any] = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    return {**metrics, "job": f"{manifest['kind']}/{name}"}
