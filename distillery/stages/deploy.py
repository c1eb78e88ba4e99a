"""Deploy stage: put a model repository where Triton serves it, or serve it with Triton here.

:func:`deploy` is the pipeline's ``deploy_model_repository`` step: it publishes the exported repository into
the serving repository (a directory or ``s3://``, with checksums) as its NEXT version, registered as the
challenger when a champion serves already (:mod:`distillery.export.publish`); :func:`serve` is
``distillery serve`` (the ``tritonserver`` bundled in ``nvidia-pytriton`` on the repository until it exits or
is interrupted).

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


def deploy(repo: str | Path, target: str, out_dir: str | Path | None = None, *,
           run_label: str = "") -> dict[str, Any]:
    """Publish the exported model repository ``repo`` into ``target`` (a directory or ``s3://``) as its next
    version, recording ``run_label`` (the operator's run name) with it; with ``out_dir`` also ``metrics.json``
    there.  Returns ``{"repository": target, "version": N, "role": "champion"|"challenger", "champion": C,
    "published": bool, "source": repo}``."""
    from distillery.export.publish import publish_version

    if not target:
        # The pipeline skips this step when it has no serving_uri (its dsl.If); a direct call without one is a bug.
        raise ValueError("deploy: no target given (the pipeline's serving_uri)")
    metrics = {**publish_version(repo, target, run_label=run_label), "source": str(repo)}
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
