"""Deploy stage: put a model repository where Triton serves it, or serve it with Triton here.

:func:`deploy` is the pipeline's ``deploy_model_repository`` step (copy to a directory or ``s3://``, with
checksums); :func:`serve` is ``distillery serve`` (the ``tritonserver`` bundled in ``nvidia-pytriton`` on the
repository until it exits or is interrupted).

CPU commands::

    distillery serve --setup-env                                      # once: the python-backend stub's env
    distillery serve --repo /tmp/repo --http-port 0 --grpc-port 0 --metrics-port 0
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distillery.stages._io import write_metrics

if TYPE_CHECKING:
    from distillery.serving.server import TritonServer


def deploy(repo: str | Path, target: str, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Copy the model repository ``repo`` to ``target`` (a directory or ``s3://``); with ``out_dir`` also
    ``metrics.json`` there.  Returns ``{"repository": <the deployed location>, "source": repo}``."""
    from distillery.storage import copy_tree

    if not target:
        raise ValueError("deploy: no target given (the pipeline's serving_uri)")
    metrics = {"repository": copy_tree(repo, target), "source": str(repo)}
    if out_dir is not None:
        write_metrics(metrics, out_dir)
    return metrics


def serve(repo: str | Path, http_port: int = 8000, grpc_port: int = 8001, metrics_port: int = 8002, *,
          startup_timeout_s: float = 180.0, ready: Callable[[TritonServer], None] | None = None) -> int:
    """Serve ``repo`` with Triton (port 0: a free one) until it exits or a ``KeyboardInterrupt`` (Ctrl-C; a
    caller maps SIGTERM onto it) stops it in order.  ``ready`` is called once every model is loaded.  Returns
    Triton's exit code, 130 if interrupted while models were loading; raises
    :class:`distillery.serving.server.ServerError` (or ``StubEnvError``) when Triton cannot start."""
    from distillery.serving.server import TritonServer

    server = TritonServer(repo, http_port, grpc_port, metrics_port, startup_timeout_s=startup_timeout_s)
    try:
        server.start()
    except KeyboardInterrupt:  # stopped while models were loading; start() already stopped Triton
        return 130
    if ready is not None:
        ready(server)
    try:
        return server.wait()
    finally:
        server.stop()
