"""The operator as its own process (``kopf run -m pipelines.operator``) and a wait that shows its log on failure;
shared by the operator's end-to-end tests and the cluster-in-a-box (tests/cluster)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

NS = "relevance-distillery"


class Operator:
    """``kopf run -m pipelines.operator`` (handlers, KFP backend injected) in a subprocess; log kept for failures."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        kopf = Path(sys.executable).parent / "kopf"
        out = self.log.open("a")
        self.proc = subprocess.Popen(
            [str(kopf), "run", "--standalone", f"--namespace={NS}", "--verbose", "-m", "pipelines.operator"],
            env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def tail(self) -> str:
        return "\n".join(self.log.read_text().splitlines()[-60:]) if self.log.exists() else ""


S3_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


def wait_for(what: str, probe: Callable[[], Any], op: Operator, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        if op.proc is not None and op.proc.poll() is not None:
            pytest.fail(f"the operator exited ({op.proc.returncode}) while waiting for {what}:\n{op.tail()}")
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}\n--- operator log ---\n{op.tail()}")
