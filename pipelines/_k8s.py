"""Kubernetes details of the tasks, through ``kfp.kubernetes`` helpers: GPUs, S3 credentials, caching, names.

They compile into the pipeline YAML (the golden files check them); the local runner ignores them.
"""

from __future__ import annotations

from kfp import kubernetes
from kfp.dsl import PipelineTask

from distillery.storage import SECRET, SECRET_ENV

GPU_RESOURCE = "nvidia.com/gpu"
GPU_NODE_SELECTOR = ("nvidia.com/gpu.present", "true")
"""The label NVIDIA's GPU feature discovery puts on GPU nodes."""
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
"""GPU node pools are tainted so that CPU pods stay off them."""

S3_SECRET = SECRET
S3_SECRET_ENV = {key: var for var, key, optional in SECRET_ENV if not optional}
"""Secret key → environment variable, required (from the one table in :mod:`distillery.storage`)."""
S3_SECRET_ENV_OPTIONAL = {key: var for var, key, optional in SECRET_ENV if optional}
"""Secret key → environment variable, optional: AWS itself needs no endpoint."""


def step(task: PipelineTask, display_name: str, cache: bool = True) -> PipelineTask:
    """Every task gets a display name and an explicit caching choice."""
    return task.set_display_name(display_name).set_caching_options(enable_caching=cache)


def on_gpu(task: PipelineTask, gpus: int = 1, memory: str = "24G", cpu: str = "4") -> PipelineTask:
    """Request ``gpus`` NVIDIA GPUs and schedule onto (tolerate) the GPU node pool."""
    task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(gpus)
    task.set_cpu_request(cpu).set_memory_request(memory).set_memory_limit(memory)
    kubernetes.add_node_selector(task, *GPU_NODE_SELECTOR)
    kubernetes.add_toleration(task, **GPU_TOLERATION)
    return task


def on_cpu(task: PipelineTask, memory: str = "4G", cpu: str = "1") -> PipelineTask:
    return task.set_cpu_request(cpu).set_memory_request(memory).set_memory_limit(memory)


def with_s3(task: PipelineTask) -> PipelineTask:
    """The artifact store's credentials as environment variables, read by ``distillery.storage``."""
    kubernetes.use_secret_as_env(task, secret_name=S3_SECRET, secret_key_to_env=S3_SECRET_ENV)
    return kubernetes.use_secret_as_env(task, secret_name=S3_SECRET, secret_key_to_env=S3_SECRET_ENV_OPTIONAL,
                                        optional=True)
