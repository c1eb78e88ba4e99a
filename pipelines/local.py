"""Run a pipeline on KFP's local runner (``SubprocessRunner(use_venv=False)``): the embedded default mode.

Each task runs as a subprocess of this interpreter, so the project's own environment is the image.
Outputs land in ``<pipeline_root>/<pipeline>-<timestamp>/<task>/``; with caching on, a rerun reuses
every completed task whose inputs are unchanged (the cache lives in ``<pipeline_root>/.kfp_cache``).
"""

import builtins
import warnings
from pathlib import Path
from typing import Any


def run_local(pipeline: Any, arguments: dict[str, Any], pipeline_root: str | Path, *, caching: bool = True) -> Any:
    """Run ``pipeline(**arguments)`` locally and return its task (``.outputs`` holds the artifacts).

    Raises ``RuntimeError`` naming the failed task when one fails (the runner stops there).
    """
    from kfp import local

    Path(pipeline_root).mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root),
               enable_caching=caching, raise_on_error=True)
    # kfp.local indents task output by swapping builtins.print per task; two ParallelFor tasks that overlap
    # restore each other's swapped function, leaving print indented after the run: put it back ourselves.
    original_print = builtins.print
    with warnings.catch_warnings():
        # GPU, node-selector and secret settings are for the cluster; locally they are expected no-ops,
        # and the trainer image name is not a python:* image on purpose.
        warnings.filterwarnings("ignore", message=".*no effect in the current local runner.*")
        warnings.filterwarnings("ignore", message=".*non-Python base image.*")
        try:
            return pipeline(**arguments)
        finally:
            builtins.print = original_print
