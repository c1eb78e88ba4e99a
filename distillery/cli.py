"""The ``distillery`` command: thin adapters that parse arguments and call the library.

Every subcommand takes ``--profile`` (tiny|demo|full), ``--config FILE.yaml`` and repeated
``--set SECTION.FIELD=VALUE``; precedence is defaults → profile → YAML → ``--set`` → dedicated flags.
Each subcommand group lives in ``distillery/commands/<name>.py`` and is listed in ``COMMAND_MODULES``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from distillery.config import ConfigError
from distillery.data.schema import DataError

Handler = Callable[[argparse.Namespace], int]

# Errors that mean "your input is wrong": one line on stderr, exit 2, no traceback.  Anything else (a
# TypeError, KeyError, RuntimeError…) is a bug or an environment failure and keeps its traceback.
# ``ValueError`` covers the library's argument checks (``--shard``, ``--weights``…); ConfigError and
# DataError (and AnnotationError, SpecError…) are ValueErrors too.
INPUT_ERRORS = (ConfigError, DataError, ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
                FileExistsError, PermissionError)


def one_line(exc: BaseException) -> str:
    """An exception as one line: an OSError as ``PATH: reason``, any other message with its lines joined."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``distillery finetune: error: …``), not usage + message."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(ValueError(message))} (see {self.prog} --help)\n")

# Registration order is the order of `distillery --help`.
COMMAND_MODULES = [
    "distillery.commands.run",
    "distillery.commands.finetune",
    "distillery.commands.teacher",
    "distillery.commands.annotate",
    "distillery.commands.distill",
    "distillery.commands.export",
    "distillery.commands.serve",
    "distillery.commands.abtest",
]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="distillery",
        description="Relevance Distillery: distil a reasoning LLM into a fast BERT relevance model, and ship it.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except INPUT_ERRORS as exc:
        if os.environ.get("DISTILLERY_DEBUG"):
            raise
        command = " ".join(x for x in (args.command, getattr(args, "step", None)) if x)
        print(f"distillery {command}: error: {one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
