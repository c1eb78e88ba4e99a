"""Execute one submitted KFP run on KFP's local runner: ``python -m tests.cluster.run_spec RUN_DIR``.

``RUN_DIR/request.json`` is the body ``kfp.Client`` POSTed to ``/apis/v2beta1/runs`` (the compiled pipeline spec
and ``runtime_config.parameters``, exactly what the operator submitted); the spec is loaded back as a component
and called with those parameters, so what runs is the operator's pipeline with the operator's arguments.
``RUN_DIR/state.json`` follows the run (``RUNNING`` → ``SUCCEEDED``/``FAILED`` with the error); the tasks'
outputs land under ``RUN_DIR/root`` (the local runner takes a local pipeline root only: the submitted
``s3://…/kfp`` root is where a cluster's KFP would put the same outputs; the steps' own S3 reads and writes
still go to the S3 server).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml


def write_state(run_dir: Path, state: str, error: str = "") -> None:
    tmp = run_dir / "state.json.tmp"
    tmp.write_text(json.dumps({"state": state, "error": error, "pid": os.getpid()}))
    tmp.replace(run_dir / "state.json")


def pipeline_spec(request: dict[str, Any]) -> dict[str, Any]:
    """The pipeline spec of a run request (with kfp-kubernetes settings it is wrapped with a platform spec)."""
    spec = request["pipeline_spec"]
    return spec["pipeline_spec"] if "pipeline_spec" in spec and "root" not in spec else spec


def main(run_dir: str) -> int:
    from kfp import components

    from pipelines.local import run_local

    d = Path(run_dir)
    request = json.loads((d / "request.json").read_text())
    (d / "pipeline.yaml").write_text(yaml.safe_dump(pipeline_spec(request), sort_keys=False))
    params = (request.get("runtime_config") or {}).get("parameters") or {}
    write_state(d, "RUNNING")
    try:
        run_local(components.load_component_from_file(str(d / "pipeline.yaml")), params, d / "root",
                  caching=False)
    except BaseException as exc:  # the run's outcome is the state file's, whatever ended it
        write_state(d, "FAILED", f"{type(exc).__name__}: {exc}"[:2000])
        return 1
    write_state(d, "SUCCEEDED")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
