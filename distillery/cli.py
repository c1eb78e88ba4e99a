"""The ``distillery`` command: thin adapters that parse arguments and call the library.

Every subcommand takes ``--profile`` (tiny|demo|full), ``--config FILE.yaml`` and repeated
``--set SECTION.FIELD=VALUE``; precedence is defaults → profile → YAML → ``--set`` → dedicated flags.
Each subcommand group lives in ``distillery/commands/<name>.py`` and is listed in ``COMMAND_MODULES``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from distillery.config import ConfigError
from distillery.data.schema import DataError

Handler = Callable[[argparse.Namespace], int]

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
    parser = argparse.ArgumentParser(
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
    except (ConfigError, DataError, FileNotFoundError, ValueError) as exc:
        print(f"distillery {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
