"""Arguments and config handling shared by every subcommand."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from distillery.config import PROFILES, Config, ConfigError, load_config, parse_overrides


def add_common(p: argparse.ArgumentParser) -> None:
    """``--profile``, ``--config`` and ``--set``: every subcommand takes them."""
    p.add_argument("--profile", choices=PROFILES, default="demo", help="size profile (default: demo)")
    p.add_argument("--config", help="YAML file of config sections overriding the profile")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override one config field (repeatable)")


def config_from_args(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> Config:
    """Defaults → profile → YAML → ``--set`` → the subcommand's dedicated flags (``extra``)."""
    overrides = parse_overrides(args.set)
    for section, values in (extra or {}).items():
        given = {k: v for k, v in values.items() if v is not None}
        node = overrides.setdefault(section, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {section}={node}: {section} is a section; set its fields ({section}.FIELD=VALUE)")
        node.update(given)
    return load_config(args.profile, args.config, overrides)


# Checks of path arguments, made before any work so that a wrong path fails in a second with its flag named,
# and nothing is written.  A teacher directory holds ``teacher.json``, a student ``distillery.json``.
STUDENT_META, TEACHER_META = "distillery.json", "teacher.json"


def _existing_dir(path: str, flag: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{flag} {path}: no such directory")
    if not p.is_dir():
        raise NotADirectoryError(f"{flag} {path}: not a directory")
    return p


def check_student_dir(path: str, flag: str = "--model") -> None:
    """A saved student (``finetune``/``distill``'s ``model/``); an S3 URI is checked where it is fetched."""
    if path.startswith("s3://"):
        return
    p = _existing_dir(path, flag)
    if (p / TEACHER_META).is_file():
        raise ValueError(f"{flag} {path}: is a teacher directory ({TEACHER_META}), not a student model directory "
                         f"(written by finetune or distill, with {STUDENT_META})")
    meta = p / STUDENT_META
    if not meta.is_file():
        what = "an empty directory" if not any(p.iterdir()) else f"no {STUDENT_META}"
        raise ValueError(f"{flag} {path}: not a student model directory ({what}; expected {STUDENT_META})")
    try:
        json.loads(meta.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise ValueError(f"{flag} {meta}: malformed {STUDENT_META} ({' '.join(str(exc).split())})") from None


def check_teacher(name: str, flag: str = "--teacher") -> None:
    """``tiny``, ``smollm2``, a teacher directory or a Hugging Face causal LM directory — not a student."""
    from distillery.teacher import engines  # noqa: F401  (registers openai: and vllm:)
    from distillery.teacher.protocol import BACKENDS

    if name in ("tiny", "smollm2") or name.partition(":")[0] in BACKENDS:
        return  # built in, or a registered backend (``PREFIX:…``), which checks its own address
    p = Path(name)
    if not p.exists():
        if "/" in name and not Path(name).is_absolute() and name.count("/") == 1 and not name.startswith("."):
            return  # a Hugging Face model id (owner/name); loaded (offline: from the cache) by the teacher
        raise FileNotFoundError(f"{flag} {name}: no such directory (and not 'tiny' or 'smollm2')")
    p = _existing_dir(name, flag)
    if (p / STUDENT_META).is_file():
        raise ValueError(f"{flag} {name}: is a student model directory ({STUDENT_META}), not a teacher "
                         f"(a directory written by `distillery teacher`, 'tiny' or 'smollm2')")
    if not (p / TEACHER_META).is_file() and not (p / "config.json").is_file():
        what = "an empty directory" if not any(p.iterdir()) else f"no {TEACHER_META} or config.json"
        raise ValueError(f"{flag} {name}: not a teacher directory ({what})")


def check_reward_dir(path: str, flag: str = "--reward") -> None:
    p = _existing_dir(path, flag)
    if not any(p.iterdir()):
        raise ValueError(f"{flag} {path}: an empty directory, not a reward model (written by `teacher reward`)")


def check_out_dir(path: str, flag: str = "--out") -> None:
    """An output directory that may exist (it is then extended), but not as a file."""
    if not path.startswith("s3://") and Path(path).exists() and not Path(path).is_dir():
        raise NotADirectoryError(f"{flag} {path}: exists and is not a directory")


def check_out_file(path: str, flag: str = "--out") -> None:
    if Path(path).is_dir():
        raise IsADirectoryError(f"{flag} {path}: is a directory; give a file path")


def check_at_least(value: int | None, lo: int, flag: str) -> None:
    if value is not None and value < lo:
        raise ValueError(f"{flag} {value}: must be at least {lo}")


@contextmanager
def cleaned_up_on_error(out: str | Path, *subdirs: str) -> Iterator[None]:
    """On an error, remove the directories the command created under ``out`` that are still empty (and ``out``
    itself if it is then empty), so a failed run leaves no output behind that looks like a result."""
    root = Path(out)
    created = [p for p in (*(root / d for d in subdirs), root) if not p.exists()]
    try:
        yield
    except BaseException:
        for p in created:  # deepest first: the subdirectories, then the output directory
            if p.is_dir() and not any(p.iterdir()):
                p.rmdir()
        raise
