"""A STUB of the Kubeflow Pipelines v2beta1 REST API on loopback, for the operator's end-to-end test.

It is not KFP: it stores what ``kfp.Client`` sends (experiments, runs with their pipeline spec) and
answers with runs whose state the test sets. Enough of the API for ``create_run_from_pipeline_package``,
``list_runs(filter=display_name)`` and ``get_run``; anything else is a 404 the test can see in ``calls``.
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

API = "/apis/v2beta1"


class KfpStub:
    """The stub's state and its server; use as a context manager."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str, int]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                self._reply(stub.route("GET", self.path, None))

            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(size) or b"{}")
                self._reply(stub.route("POST", self.path, body))

            def _reply(self, result: tuple[int, Any]) -> None:
                code, payload = result
                stub.calls.append((self.command, self.path, code))
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> KfpStub:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def submissions(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.runs.values()]

    def set_run(self, run_id: str, state: str, tasks: dict[str, str] | None = None, error: str = "") -> None:
        """Move a stored run to ``state`` with task display name → state, as KFP's backend would."""
        with self.lock:
            run = self.runs[run_id]
            run["state"] = state
            run["run_details"] = {"task_details": [{"display_name": n, "state": s, "task_id": n}
                                                   for n, s in (tasks or {}).items()]}
            if error:
                run["error"] = {"code": 2, "message": error}

    def route(self, method: str, raw_path: str, body: Any) -> tuple[int, Any]:
        url = urlparse(raw_path)
        path, query = url.path.rstrip("/"), parse_qs(url.query)
        with self.lock:
            if method == "GET" and path == f"{API}/healthz":
                return 200, {"multi_user": False}
            if method == "GET" and path == f"{API}/experiments":
                return 200, {"experiments": _filtered(self.experiments.values(), query)}
            if method == "POST" and path == f"{API}/experiments":
                exp = {**body, "experiment_id": str(uuid.uuid4())}
                self.experiments[exp["experiment_id"]] = exp
                return 200, exp
            if method == "GET" and path == f"{API}/runs":
                return 200, {"runs": _filtered(self.runs.values(), query)}
            if method == "POST" and path == f"{API}/runs":
                run = {**body, "run_id": str(uuid.uuid4()), "state": "PENDING"}
                self.runs[run["run_id"]] = run
                return 200, run
            if method == "GET" and path.startswith(f"{API}/runs/"):
                run_id = path.rsplit("/", 1)[1]
                if run_id in self.runs:
                    return 200, self.runs[run_id]
        return 404, {"error": f"the KFP stub does not serve {method} {path}", "code": 5}


def _filtered(items: Any, query: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Apply a v2beta1 ``filter`` of EQUALS predicates on string fields (what kfp.Client sends)."""
    out = list(items)
    for flt in query.get("filter", []):
        for p in json.loads(flt).get("predicates", []):
            value = p.get("string_value", p.get("stringValue"))
            out = [i for i in out if str(i.get(p["key"])) == str(value)]
    return out
