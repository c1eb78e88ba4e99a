"""A real Triton server (the ``tritonserver`` binary bundled in the ``nvidia-pytriton`` wheel).

    from distillery.serving.server import TritonServer
    with TritonServer("/tmp/repo") as server:          # free loopback ports, waits until ready
        print(server.http_url, server.grpc_url, server.metrics_url)

Only the python backend ships in that wheel, so a local repository serves the student through the
python-backend ``student`` model (onnxruntime); see ``stubenv`` for the environment its stub needs.
A model that fails to load stops the server, and :class:`ModelLoadError` names it with Triton's reason.
The server gets SIGINT when the thread that started it exits (Linux ``PR_SET_PDEATHSIG``), so a killed
launcher leaves no orphan: start it from a thread that lives as long as the server should.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from distillery.serving.stubenv import check_env, default_env_dir, stub_environ

_FAILED = re.compile(r"failed to load '([^']+)' version (\d+): (.*)")
_LOG_LINE = re.compile(r"^[IWE]\d{4} ")


class ServerError(RuntimeError):
    """The server could not start or stopped unexpectedly; the message carries the log's tail."""


class ModelLoadError(ServerError):
    """A model of the repository failed to load."""

    def __init__(self, model: str, version: str, reason: str, others: list[str] | None = None) -> None:
        self.model, self.version, self.reason = model, version, reason
        extra = f" (also failed: {', '.join(others)})" if others else ""
        super().__init__(f"Triton could not load model '{model}' version {version}: {reason}{extra}")


def tritonserver_binary() -> Path:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError("the tritonserver binary comes with the nvidia-pytriton package, which is not installed")
    binary = Path(spec.submodule_search_locations[0]) / "tritonserver" / "bin" / "tritonserver"
    if not binary.exists():
        raise ServerError(f"{binary}: not found in the nvidia-pytriton package")
    return binary


def make_backend_dir(root: Path) -> Path:
    """A backend directory holding the wheel's python backend (symlinks), for ``--backend-directory``."""
    wheel = tritonserver_binary().parents[1]
    py = root / "python"
    py.mkdir(parents=True, exist_ok=True)
    for src in (wheel / "backends" / "python" / "libtriton_python.so",
                wheel / "backends" / "python" / "triton_python_backend_utils.py",
                wheel / "python_backend_stubs" / "3.11" / "triton_python_backend_stub"):
        (py / src.name).symlink_to(src)
    return root


def _die_with_parent() -> None:
    """Runs in the child before exec: Linux sends it SIGINT when the launching process dies, so a
    launcher killed with SIGKILL leaves no orphaned server behind."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGINT)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the server then outlives a killed launcher
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load_failures(log: str) -> list[tuple[str, str, str]]:
    """(model, version, reason) for every "failed to load" in a Triton log, reason with its continuation lines."""
    out: list[tuple[str, str, str]] = []
    lines = log.splitlines()
    for i, line in enumerate(lines):
        m = _FAILED.search(line)
        if not m:
            continue
        reason = [m.group(3)]
        for nxt in lines[i + 1:i + 40]:
            if _LOG_LINE.match(nxt) or nxt.startswith("+--") or nxt.startswith("| "):
                break
            reason.append(nxt)
        out.append((m.group(1), m.group(2), "\n".join(r for r in reason if r.strip()).strip()))
    return out


REMOTE_SCHEMES = ("s3://", "gs://", "as://")


def is_remote(repo: str | Path) -> bool:
    """A repository Triton reads from object storage (``s3://[http://HOST:PORT/]BUCKET/PATH``)."""
    return str(repo).startswith(REMOTE_SCHEMES)


class TritonServer:
    """Start ``tritonserver`` on a model repository; a context manager that stops it on exit."""

    def __init__(self, repo: str | Path, http_port: int = 0, grpc_port: int = 0, metrics_port: int = 0, *,
                 env_dir: str | Path | None = None, startup_timeout_s: float = 180.0, log_verbose: int = 0,
                 extra_args: tuple[str, ...] = ()) -> None:
        # Triton reads s3:// (and gs://, as://) repositories itself, as the cluster's Triton does.
        self.repo: str | Path = str(repo) if is_remote(repo) else Path(repo).resolve()
        self.ports = {"http": http_port, "grpc": grpc_port, "metrics": metrics_port}
        self.env_dir = Path(env_dir) if env_dir else default_env_dir()
        self.startup_timeout_s = startup_timeout_s
        self.log_verbose = log_verbose
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None
        self._tmp: Path | None = None

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.ports['http']}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['metrics']}/metrics"

    @property
    def log_path(self) -> Path | None:
        return self._tmp / "tritonserver.log" if self._tmp else None

    def log_text(self) -> str:
        path = self.log_path
        return path.read_text(encoding="utf-8", errors="replace") if path and path.exists() else ""

    def command(self, backend_dir: Path) -> list[str]:
        return [str(tritonserver_binary()), f"--model-repository={self.repo}", f"--backend-directory={backend_dir}",
                "--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1",
                f"--http-port={self.ports['http']}", f"--grpc-port={self.ports['grpc']}",
                f"--metrics-port={self.ports['metrics']}", "--allow-metrics=true", "--allow-gpu-metrics=false",
                f"--log-verbose={self.log_verbose}", *self.extra_args]

    def start(self) -> TritonServer:
        """Launch the server and block until ``/v2/health/ready`` answers 200."""
        if isinstance(self.repo, Path) and not self.repo.is_dir():
            raise ServerError(f"--repo {self.repo}: no such model repository directory")
        check_env(self.env_dir)
        self._tmp = Path(tempfile.mkdtemp(prefix="distillery-triton-"))
        backend = make_backend_dir(self._tmp / "backends")
        for key, port in self.ports.items():
            self.ports[key] = port or free_port()
        with open(self._tmp / "tritonserver.log", "wb") as log:
            # Own session: Ctrl-C in a terminal reaches us first, and we stop the server in order.
            self.process = subprocess.Popen(self.command(backend), stdout=log, stderr=subprocess.STDOUT,
                                            env=stub_environ(self.env_dir), start_new_session=True,
                                            preexec_fn=_die_with_parent)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._raise_startup_failure()
            if self._ready():
                return
            time.sleep(0.25)
        raise ServerError(f"tritonserver not ready after {self.startup_timeout_s:.0f} s; log tail:\n"
                          + self.log_text()[-3000:])

    def _raise_startup_failure(self) -> None:
        log = self.log_text()
        failures = load_failures(log)
        if failures:
            model, version, reason = failures[0]
            raise ModelLoadError(model, version, reason, [f"{m} v{v}" for m, v, _ in failures[1:]])
        code = self.process.returncode if self.process else None
        raise ServerError(f"tritonserver exited with code {code} before it was ready; log tail:\n{log[-3000:]}")

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGINT (Triton unloads its models and exits), SIGKILL to the group if it hangs."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self._tmp is not None and not os.environ.get("DISTILLERY_KEEP_TRITON_LOG"):
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def wait(self) -> int:
        """Block until the server exits (``distillery serve``); Ctrl-C stops it cleanly."""
        assert self.process is not None, "start() first"
        try:
            return self.process.wait()
        except KeyboardInterrupt:
            self.stop()
            return 0

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
