"""The exposure log: one JSON line per served request (user, arm, request id, items shown, latency).

Lines must never be lost or torn, even with many requests in flight, executor threads, or several
splitter processes appending to one file: each record is encoded whole, then written with a single
``os.write`` on a descriptor opened with ``O_APPEND`` (the kernel positions and writes each call
atomically on a local filesystem), under a lock that also serialises the rare short write's retry.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any


class ExposureLog:
    """Append-only JSONL writer; ``None`` path makes it a no-op (exposure logging off)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._fd: int | None = None
        self.lines = 0
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, record: dict[str, Any]) -> None:
        if self._fd is None:
            return
        data = (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            self.lines += 1

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def read_exposures(path: str | Path) -> list[dict[str, Any]]:
    """Every record of an exposure log; a torn or non-JSON line is an error naming the line."""
    out = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{i}: not a JSON line ({exc.msg})") from None
    return out
