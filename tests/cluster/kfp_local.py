"""The KFP v2beta1 REST API on loopback, backed by KFP's local runner: submitted runs really execute.

The operator's own ``KfpBackend`` talks to it through ``kfp.Client`` as it would to Kubeflow Pipelines; each
``POST /runs`` starts ``python -m tests.cluster.run_spec`` on the request body, so the pipeline spec the operator
compiled runs with exactly the arguments it passed (FAKE only in that this is not KFP's API server: the API's
bookkeeping — experiments, run listing by name, run state — is the stub's of ``tests/k8s/kfp_stub.py``).

Run state comes from the executor's state file; task states from the task output directories the local runner
writes (display names from the spec's ``taskInfo``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from tests.cluster.run_spec import pipeline_spec
from tests.k8s.kfp_stub import API, KfpStub

REPO = Path(__file__).resolve().parents[2]


def display_names(spec: dict[str, Any]) -> dict[str, str]:
    """Task name → display name, over the root DAG and every sub-DAG of the spec."""
    out: dict[str, str] = {}
    dags = [spec.get("root", {}), *(spec.get("components") or {}).values()]
    for comp in dags:
        for name, task in ((comp.get("dag") or {}).get("tasks") or {}).items():
            out[name] = (task.get("taskInfo") or {}).get("name", name)
    return out


class KfpLocal(KfpStub):
    """A KFP API whose runs execute on the local runner, one subprocess per run, under ``work``."""

    def __init__(self, work: Path, env: dict[str, str]) -> None:
        super().__init__()
        self.work, self.env = work, env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        super().__exit__(*exc)

    def run_dir(self, run_id: str) -> Path:
        return self.work / run_id

    def route(self, method: str, raw_path: str, body: Any) -> tuple[int, Any]:
        path = raw_path.split("?", 1)[0].rstrip("/")
        if method == "POST" and path == f"{API}/runs":
            return self._start(body)
        if method == "GET" and (path == f"{API}/runs" or path.startswith(f"{API}/runs/")):
            with self.lock:
                for run_id in self.runs:
                    self._refresh(run_id)
        return super().route(method, raw_path, body)

    def _start(self, body: dict[str, Any]) -> tuple[int, Any]:
        run_id = str(uuid.uuid4())
        d = self.run_dir(run_id)
        d.mkdir(parents=True)
        (d / "request.json").write_text(json.dumps(body))
        log = (d / "run.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "tests.cluster.run_spec", str(d)], cwd=REPO,
                                env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        with self.lock:
            self.procs[run_id] = proc
            self.runs[run_id] = {**body, "run_id": run_id, "state": "PENDING"}
            return 200, self.runs[run_id]

    def _refresh(self, run_id: str) -> None:
        run, d = self.runs[run_id], self.run_dir(run_id)
        state_file = d / "state.json"
        if not state_file.exists():
            return
        state = json.loads(state_file.read_text())
        proc = self.procs.get(run_id)
        if state["state"] == "RUNNING" and proc is not None and proc.poll() is not None:
            state = {"state": "FAILED", "error": f"the executor died (exit {proc.returncode}); see {d / 'run.log'}"}
        names = display_names(pipeline_spec(run))
        done = state["state"] == "SUCCEEDED"
        tasks = {names.get(t.name, t.name): "SUCCEEDED" if done else "RUNNING"
                 for r in (d / "root").glob("*") if r.is_dir() for t in r.iterdir() if t.is_dir()}
        run["state"] = state["state"]
        run["run_details"] = {"task_details": [{"display_name": n, "state": s, "task_id": n}
                                               for n, s in sorted(tasks.items())]}
        if state.get("error"):
            run["error"] = {"code": 2, "message": state["error"]}

    def log_tail(self, run_id: str, lines: int = 80) -> str:
        log = self.run_dir(run_id) / "run.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""
