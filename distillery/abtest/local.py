"""``distillery abtest`` end to end on loopback: Triton + the splitter (own process) + simulated users + gate.

1. both students go into one Triton repository (champion version 1 → ensemble ``relevance_v1``,
   challenger version 2 → ``relevance_v2``) and a real ``tritonserver`` serves them;
2. the splitter runs as its own process (``python -m distillery.abtest.splitter_main``) on a free port, with the split
   written as a file, and is waited for until ``/ready`` (Triton has loaded both versions by then);
3. simulated users go through the splitter batch by batch; the gate looks after every batch;
4. the decision JSON, the report with its plots, the exposure log, the events and the splitter's
   final ``/metrics`` are written to ``out``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillery.abtest.arms import Arm, SplitConfig, save_split
from distillery.abtest.experiment import ExperimentResult, run_experiment
from distillery.abtest.gate import Gate
from distillery.abtest.httpsim import http_server
from distillery.abtest.report import write_report
from distillery.abtest.simulator import QueryGroup, SimConfig
from distillery.config import ABTestConfig

# The splitter app ships as a module of the package: the same entry the splitter image runs.
SPLITTER_MODULE = "distillery.abtest.splitter_main"


@dataclass
class LocalRun:
    """What one local experiment produced."""

    result: ExperimentResult
    out: Path
    report: Path


def two_arm_split(weights: tuple[float, float], timeout_s: float, salt: str = "distillery-ab") -> SplitConfig:
    arms = (Arm("champion", "relevance_v1", "", weights[0]), Arm("challenger", "relevance_v2", "", weights[1]))
    return SplitConfig("champion-vs-challenger", salt, "champion", arms, timeout_s)


@contextmanager
def splitter_process(split_file: Path, triton_url: str, exposure_log: Path, log_file: Path,
                     startup_s: float = 60.0, client: str = "relevance") -> Iterator[str]:
    """Run the splitter app in its own process; yields its URL once ``/ready`` answers 200."""
    cmd = [sys.executable, "-m", SPLITTER_MODULE, "--split", str(split_file), "--triton-url", triton_url,
           "--port", "0", "--exposure-log", str(exposure_log), "--poll-s", "0.5", "--client", client]
    with open(log_file, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("SPLITTER_READY "):
            raise RuntimeError(f"splitter did not start (see {log_file}): {line!r}")
        url = line.split()[1]
        _wait_ready(url, startup_s, log_file)
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(url: str, startup_s: float, log_file: Path) -> None:
    deadline = time.monotonic() + startup_s
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=10) as r:
                if r.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            last = exc.read().decode(errors="replace")
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last = str(exc)
        time.sleep(0.5)
    raise RuntimeError(f"splitter not ready after {startup_s:.0f}s: {last} (log: {log_file})")


def fetch_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return str(r.read().decode())


def build_two_version_repo(champion_dir: str, challenger_dir: str, repo: Path) -> dict[str, Any]:
    """Champion as version 1 (also ``relevance``), challenger as version 2 beside it."""
    from distillery.export.repository import build_repository

    build_repository(champion_dir, repo, version=1, promote=True)
    return build_repository(challenger_dir, repo, version=2, promote=False)


def run_local(champion_dir: str, challenger_dir: str, queries: list[QueryGroup], users: int,
              weights: tuple[float, float], out: str | Path, cfg: ABTestConfig, *, progress: bool = True,
              context: dict[str, Any] | None = None) -> LocalRun:
    """The whole loop on loopback; see the module docstring."""
    from distillery.serving.server import TritonServer

    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    repo = d / "repo"
    build_two_version_repo(champion_dir, challenger_dir, repo)
    split = two_arm_split(weights, cfg.request_timeout_s)
    save_split(split, d / "split.json")
    sim = SimConfig(users_per_batch=cfg.users_per_batch, sessions_per_user=cfg.sessions_per_user,
                    shown=cfg.shown, seed=cfg.seed)
    gate = Gate(cfg, split.champion, split.weights)
    with TritonServer(repo) as triton, \
            splitter_process(d / "split.json", triton.http_url, d / "exposures.jsonl", d / "splitter.log") as url, \
            open(d / "events.jsonl", "w", encoding="utf-8") as ev:
        def emit(event: dict[str, Any]) -> None:
            ev.write(json.dumps(event) + "\n")

        result = run_experiment(queries, http_server(url, queries, cfg.concurrency), gate, sim, users,
                                events=emit, progress=progress)
        (d / "splitter_metrics.prom").write_text(fetch_text(f"{url}/metrics"), encoding="utf-8")
    ctx = {"champion": champion_dir, "challenger": challenger_dir, "users simulated": result.users,
           "looks (gate checks)": result.looks, "weights": f"{weights[0]:g}/{weights[1]:g}",
           "served through": "Triton (python backend, onnxruntime) behind the splitter on loopback",
           **(context or {})}
    report = write_report(d, result.decision, result.history, cfg.primary_metric, "A/B experiment", ctx)
    return LocalRun(result, d, report)
