"""What every stage shares: the config as it travels between steps, pair files, metrics and reports on disk.

No ``kfp`` here: a KFP component maps its artifacts onto plain paths and strings, and a CLI command its flags.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distillery.config import Config, load_config

if TYPE_CHECKING:
    from distillery.data.schema import Pair

PAIRS_FILE = "pairs.jsonl"
SPLIT_FILES = ("seed", "logs", "val", "test")
"""The split files of a prepared dataset directory: ``<name>.jsonl`` each."""


def config_to_json(cfg: Config) -> str:
    return json.dumps(cfg.to_dict(), sort_keys=True)


def config_from_json(text: str) -> Config:
    """The :class:`Config` a step runs with (validated again: a step may run on another machine).

    ``text`` is the JSON of a resolved config, or just a profile name (``demo``: the compiled default).
    """
    if not text.lstrip().startswith("{"):
        return load_config(text.strip() or "demo")
    values = json.loads(text)
    profile = values.pop("profile", "demo")
    return load_config(profile, overrides=values)


def read_pairs(path: str | Path) -> list[Pair]:
    """The pairs of a JSONL file written by :func:`distillery.data.write_jsonl` (a bad line names itself)."""
    from distillery.data.schema import DataError, Pair

    pairs = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            try:
                pairs.append(Pair.from_json(json.loads(line)))
            except (ValueError, TypeError) as exc:
                raise DataError(f"{path}:{lineno}: not a pair record: {exc}") from None
    return pairs


def write_metrics(metrics: dict[str, Any], out_dir: str | Path, extra_file: str | None = None) -> None:
    """``metrics.json`` in ``out_dir``; also at ``extra_file`` (a KFP Metrics artifact's own path)."""
    from distillery.evaluate import write_json

    write_json(metrics, Path(out_dir) / "metrics.json")
    if extra_file:
        write_json(metrics, extra_file)


def table_report(out_dir: str | Path, title: str, summary: dict[str, Any], skip: tuple[str, ...] = ("losses",)
                 ) -> Path:
    """``report.md``: the summary as a field/value table (nested values as JSON, per-step curves left out)."""
    rows = [f"| {k} | {json.dumps(v) if isinstance(v, dict | list) else v} |" for k, v in summary.items()
            if k not in skip]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.md"
    path.write_text("\n".join([f"# {title}", "", "| field | value |", "|---|---|", *rows]) + "\n", encoding="utf-8")
    return path


def publish(artifacts: dict[str, str], uri: str) -> dict[str, str]:
    """Copy each named artifact directory to ``uri/<name>`` (local or ``s3://``); returns the new locations."""
    from distillery.storage import copy_tree

    base = uri.rstrip("/")
    return {name: copy_tree(path, f"{base}/{name}") for name, path in artifacts.items()}


def publish_named(uri: str, **artifacts: Any) -> dict[str, str]:
    """:func:`publish` for KFP input artifacts given by name (``None``: that stage did not run)."""
    return publish({name: a.path for name, a in artifacts.items() if a is not None}, uri)
