"""Progress per task for a pipeline run on KFP's local runner, and the error of a failing task.

The local runner prints each task's output (``print``) and its own log lines to ``sys.stdout``.  A
:class:`TaskLog` stands in for ``sys.stdout`` during the run: everything goes to the full log file,
while one short line per task event (started, done with its time, reused from the cache, failed)
goes to the terminal.  Task output is attributed to the task running on the same thread (the local
runner streams a task's subprocess from the thread that started it), so a failing task's own last
lines are at hand for the error message.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import IO, Any

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_START = re.compile(r"Executing task '?([\w.-]+)'?")
_END = re.compile(r"Task '?([\w.-]+)'? finished with status (\w+)")
_CACHED = re.compile(r"Task '?([\w.-]+)'? cache hit")
_EXC = re.compile(r"^\s*([A-Za-z_][\w.]*(Error|Exception|Exit)\b.*)$")


@dataclass
class TaskEvents:
    """What happened to each task, in order, with wall times."""

    started: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    cached: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    tails: dict[str, deque[str]] = field(default_factory=dict)

    def error_of(self, task: str) -> str:
        """The exception line of a failed task's output (the last one), or its last output lines."""
        lines = list(self.tails.get(task, []))
        errors = [m.group(1) for line in lines if (m := _EXC.match(line))]
        if errors:
            return errors[-1]
        return " | ".join(x.strip() for x in lines[-3:] if x.strip()) or "no output"


class TaskLog:
    """A ``sys.stdout`` replacement: full log to ``log``, one progress line per task event to ``terminal``."""

    def __init__(self, log: IO[str], terminal: IO[str] | None = None, tail: int = 40) -> None:
        self.log = log
        self.terminal = terminal if terminal is not None else sys.stderr
        self.events = TaskEvents()
        self._tail = tail
        self._by_thread: dict[int, str] = {}
        self._lock = threading.Lock()
        self._partial = ""

    def write(self, text: str) -> int:
        with self._lock:
            if self.log.closed:  # a late line after the run: nowhere to keep it
                return len(text)
            self.log.write(text)
            self._partial += text
            *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self.line(_ANSI.sub("", line))
        return len(text)

    def flush(self) -> None:
        if not self.log.closed:
            self.log.flush()

    def isatty(self) -> bool:
        return False

    def line(self, line: str) -> None:
        """Route one line: a task event, or output of the task running on this thread."""
        ev = self.events
        if m := _START.search(line):
            name = self._unique(m.group(1))
            self._by_thread[threading.get_ident()] = name
            ev.started[name] = time.perf_counter()
            ev.tails[name] = deque(maxlen=self._tail)
            self._say(f"▶ {name}")
        elif m := _END.search(line):
            name, status = self._by_thread.get(threading.get_ident()) or m.group(1), m.group(2)
            ev.seconds[name] = time.perf_counter() - ev.started.get(name, time.perf_counter())
            if status == "SUCCESS":
                self._say(f"✓ {name} ({ev.seconds[name]:.1f} s)")
            else:
                ev.failed.append(name)
                self._say(f"✗ {name} failed after {ev.seconds[name]:.1f} s: {ev.error_of(name)}")
        elif m := _CACHED.search(line):
            ev.cached.append(m.group(1))
            self._say(f"↺ {m.group(1)} (reused from the cache)")
        else:
            owner = self._by_thread.get(threading.get_ident())
            if owner is not None and owner in ev.tails:
                ev.tails[owner].append(line)

    def _unique(self, name: str) -> str:
        """Tasks of a ParallelFor share a name: the second one is ``name#2`` and so on."""
        n, unique = 1, name
        while unique in self.events.started:
            n += 1
            unique = f"{name}#{n}"
        return unique

    def _say(self, text: str) -> None:
        with self._lock:  # parallel tasks: one whole line at a time
            self.terminal.write(text + "\n")
            self.terminal.flush()


class _LogHandler(logging.Handler):
    """Feeds the runner's log records (cache hits are logged outside its own stdout handler) to a TaskLog."""

    def __init__(self, sink: TaskLog) -> None:
        super().__init__(logging.INFO)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.write(self.format(record) + "\n")


def capture(sink: TaskLog) -> Any:
    """A context manager routing ``sys.stdout`` and the root logger into ``sink`` for the run."""
    import contextlib

    @contextlib.contextmanager
    def _ctx() -> Any:
        root = logging.getLogger()
        handler = _LogHandler(sink)
        old_level, old_handlers = root.level, root.handlers[:]
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            with contextlib.redirect_stdout(sink):
                yield sink
        finally:
            # Put back exactly the handlers we found: kfp.local swaps the root handlers per task, and
            # overlapping tasks can leave one of its handlers (writing to this sink) behind.
            root.handlers[:] = old_handlers
            root.setLevel(old_level)
            sink.flush()

    return _ctx()
