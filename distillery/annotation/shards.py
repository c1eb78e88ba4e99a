"""Shard files: a stable hash partition of the pairs, append-only JSONL with fsync, and reading back.

A shard's records are written in the shard's pair order, one JSON object per line, each batch as one
``write`` followed by ``flush`` + ``fsync``.  A process killed at any instant therefore leaves a file
whose complete lines are a prefix of the shard's order, followed at most by one half-written line with
no newline.  :func:`read_shard_file` returns the complete records and reports that torn tail so the
writer can cut it off and redo it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillery.data.schema import LABEL_SETS, DataError, Pair

Key = tuple[str, str]
REQUIRED_FIELDS = ("query_id", "item_id", "label", "label_probs", "reasoning")


class AnnotationError(DataError):
    """A shard file or shard set is malformed, incomplete or inconsistent; the message names file and line."""


def pair_key(p: Pair) -> Key:
    return (p.query_id, p.item_id)


def shard_of(key: Key, num_shards: int) -> int:
    """The shard of a pair: a stable hash of ``(query_id, item_id)`` (not Python's salted ``hash``)."""
    digest = hashlib.sha1(f"{key[0]}\t{key[1]}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % num_shards


def partition(pairs: list[Pair], shard: int, num_shards: int) -> list[Pair]:
    """The pairs of one shard, in input order.  Every pair lands in exactly one shard."""
    if num_shards < 1:
        raise ValueError(f"--num-shards {num_shards}: must be at least 1")
    if not 0 <= shard < num_shards:
        raise ValueError(f"--shard {shard}: must be in [0, {num_shards - 1}] for --num-shards {num_shards}")
    return [p for p in pairs if shard_of(pair_key(p), num_shards) == shard]


@dataclass(frozen=True)
class ShardPaths:
    records: Path
    manifest: Path
    stats: Path


def shard_paths(out_dir: str | Path, shard: int, num_shards: int) -> ShardPaths:
    stem = Path(out_dir) / f"shard-{shard:05d}-of-{num_shards:05d}"
    return ShardPaths(stem.with_suffix(".jsonl"), stem.with_suffix(".manifest.json"),
                      stem.with_suffix(".stats.jsonl"))


@dataclass
class ShardContent:
    records: list[dict[str, Any]]
    complete_bytes: int
    """Length of the file's prefix of complete lines (where a resumed writer truncates to)."""
    torn_line: int | None
    """1-based line number of a half-written last line, if any."""


def _parse_line(raw: bytes, path: Path, lineno: int) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"{path}:{lineno}: malformed record (not JSON: {exc})") from None
    if not isinstance(obj, dict):
        raise AnnotationError(f"{path}:{lineno}: malformed record (a JSON object is expected)")
    missing = [f for f in REQUIRED_FIELDS if f not in obj]
    if missing:
        raise AnnotationError(f"{path}:{lineno}: malformed record (missing field(s) {', '.join(missing)})")
    probs = obj["label_probs"]
    if probs is not None and (not isinstance(probs, list) or not all(
            isinstance(x, int | float) and not isinstance(x, bool) and 0.0 <= x <= 1.0 for x in probs)):
        raise AnnotationError(f"{path}:{lineno}: malformed record (field 'label_probs' must be a list of "
                              f"probabilities in [0, 1], got {json.dumps(probs)[:80]})")
    label = obj["label"]
    if label is not None and (not isinstance(label, str) or not any(ls.knows(label) for ls in LABEL_SETS.values())):
        raise AnnotationError(f"{path}:{lineno}: malformed record (field 'label': {json.dumps(label)[:40]} is not "
                              "a label of any label set, nor null)")
    for name in ("query_id", "item_id"):
        if not isinstance(obj[name], str) or not obj[name]:
            raise AnnotationError(f"{path}:{lineno}: malformed record (field {name!r} must be a non-empty string)")
    return obj


def read_shard_file(path: str | Path) -> ShardContent:
    """Complete records of a shard file; a last line without its newline is reported as torn, not parsed."""
    path = Path(path)
    if not path.exists():
        return ShardContent([], 0, None)
    data = path.read_bytes()
    records: list[dict[str, Any]] = []
    pos, lineno = 0, 0
    while pos < len(data):
        lineno += 1
        end = data.find(b"\n", pos)
        if end < 0:  # the writer died inside this line's write
            return ShardContent(records, pos, lineno)
        raw = data[pos:end]
        if raw.strip():
            records.append(_parse_line(raw, path, lineno) | {"_line": lineno})
        pos = end + 1
    return ShardContent(records, pos, None)


def truncate_to(path: Path, size: int) -> None:
    """Cut a torn tail off durably before appending after it."""
    with path.open("r+b") as fh:
        fh.truncate(size)
        fh.flush()
        os.fsync(fh.fileno())


def encode_records(records: list[dict[str, Any]]) -> bytes:
    """The bytes of ``records`` as shard lines (the local file and the artifact store's parts hold the same)."""
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records).encode()


def append_records(path: Path, records: list[dict[str, Any]], fsync: bool = True) -> None:
    """Append records as one write: a crash leaves whole lines plus at most one torn last line."""
    if not records:
        return
    blob = encode_records(records)
    with path.open("ab") as fh:
        fh.write(blob)
        fh.flush()
        if fsync:
            os.fsync(fh.fileno())


def write_json_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def strip_private(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not k.startswith("_")}
