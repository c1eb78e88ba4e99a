"""Runs one bad-input case and judges how it failed (shared by the tests and ``benchmarks/bad_input.py``).

A case fails *cleanly* when:

- it is refused: a CLI case exits non-zero, a library case raises one of the expected error types;
- with a one-line message (a CLI case prints exactly one ``distillery …: error: …`` line and no traceback);
- that names what is wrong (every ``expect`` substring: the file, line, field or resource);
- and leaves nothing behind that looks finished (every ``absent`` path is missing afterwards).

Anything else — a traceback, exit 0, a multi-line or vague message, a left-over output — is a crash.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ERROR_LINE = re.compile(r"^distillery[\w -]*: error: ")


@dataclass
class Probe:
    """What a case does (``argv`` for the CLI, or ``call`` for a library function) and what must hold after."""

    argv: list[str] | None = None
    call: Callable[[], Any] | None = None
    errors: tuple[type[BaseException], ...] = ()
    """Library cases: the exception types that count as a clean refusal."""
    expect: tuple[str, ...] = ()
    """Substrings the error message must contain (file, line, field, resource…)."""
    absent: tuple[Path, ...] = ()
    """Paths that must not exist after the failure (outputs that would look finished)."""


@dataclass(frozen=True)
class Case:
    category: str
    name: str
    setup: Callable[[Path, Fixtures], Probe]


@dataclass
class Outcome:
    clean: bool
    message: str
    problem: str = ""


@dataclass
class Fixtures:
    """Model directories built once per session (tiny, random-init) and reused by every case."""

    root: Path
    _cache: dict[str, Path] = field(default_factory=dict)

    def student(self) -> Path:
        if "student" not in self._cache:
            from tests.students import make_student

            out = self.root / "student"
            out.mkdir(parents=True, exist_ok=True)
            self._cache["student"] = make_student(out, 0, ["spa near me", "pizza"], ["Jade Spa", "Pizza House"])
        return self._cache["student"]

    def teacher(self) -> Path:
        if "teacher" not in self._cache:
            from distillery.config import load_config
            from distillery.teacher.model import load_base, meta_for, save_teacher

            cfg = load_config("tiny")
            tok, model, base = load_base("tiny", cfg.teacher)
            self._cache["teacher"] = save_teacher(model, tok, meta_for(base, cfg), self.root / "teacher")
        return self._cache["teacher"]


def _one_line(text: str) -> bool:
    return bool(text.strip()) and "\n" not in text.strip()


def _judge_message(message: str, probe: Probe) -> str:
    if not _one_line(message):
        return f"message is not one line: {message!r}"
    missing = [s for s in probe.expect if s not in message]
    if missing:
        return f"message does not name {missing}: {message!r}"
    return ""


def _run_cli(argv: list[str]) -> tuple[int | str | None, str, str]:
    from distillery.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc: int | str | None = main(argv)
        except SystemExit as exc:
            rc = exc.code
    return rc, out.getvalue(), err.getvalue()


def run_case(case: Case, tmp: Path, fixtures: Fixtures) -> Outcome:
    try:
        probe = case.setup(tmp, fixtures)
    except Exception as exc:  # a broken case, not a finding; report it loudly
        raise RuntimeError(f"case {case.category}/{case.name}: setup failed: {exc}") from exc
    message, problem = "", ""
    try:
        if probe.argv is not None:
            rc, _, err = _run_cli(probe.argv)
            lines = [line for line in err.splitlines() if ERROR_LINE.match(line)]
            message = lines[-1] if lines else err.strip()[-500:]
            if rc in (0, None):
                problem = "exit code 0"
            elif "Traceback" in err:
                problem = "traceback printed"
            elif len(lines) != 1:
                problem = f"expected one 'distillery …: error:' line, got {len(lines)}: {err.strip()[-500:]!r}"
            else:
                problem = _judge_message(message, probe)
        else:
            assert probe.call is not None
            try:
                probe.call()
            except probe.errors as exc:
                message = str(exc)
                problem = _judge_message(message, probe)
            else:
                problem = "accepted without an error"
    except Exception as exc:  # the finding: an uncaught crash
        message = f"{type(exc).__name__}: {exc}"
        problem = "crashed: " + "".join(traceback.format_exception_only(exc)).strip()[-500:]
    if not problem:
        left = [str(p) for p in probe.absent if p.exists()]
        if left:
            problem = f"output left behind: {left}"
    return Outcome(not problem, message, problem)
