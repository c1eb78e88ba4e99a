"""Arguments and config handling shared by every subcommand."""

from __future__ import annotations

import argparse
from typing import Any

from distillery.config import PROFILES, Config, load_config, parse_overrides


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
        overrides.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
    return load_config(args.profile, args.config, overrides)
