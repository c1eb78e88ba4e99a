"""Annotate one shard: select the pairs, resume after the last complete record, generate in batches.

Batches sit on a fixed grid of the shard's pair order (batch ``k`` = positions ``k·B … k·B+B-1``).  A
resumed shard regenerates the whole batch it stopped in and writes only the records that are missing,
so every record is produced with exactly the same batch (same padding, same numerics) as in an
uninterrupted run, and the file ends up byte-identical to one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tqdm.auto import tqdm

from distillery.annotation.shards import (
    AnnotationError,
    append_records,
    pair_key,
    partition,
    read_shard_file,
    shard_paths,
    truncate_to,
    write_json_atomic,
)
from distillery.config import Config
from distillery.data.schema import Pair
from distillery.data.splits import hide_labels, split_pairs


class TeacherLike(Protocol):
    """What annotation needs of ``distillery.teacher.inference.Teacher``."""

    def answer(self, pairs: list[Pair], batch_size: int) -> Sequence[Any]: ...

    def identity(self) -> dict[str, Any]: ...


@dataclass
class ShardResult:
    shard: int
    num_shards: int
    total: int
    already_done: int
    written: int
    torn_line_redone: int | None
    seconds: float
    prompt_tokens: int
    generated_tokens: int
    path: str


def _stable_fraction(key: tuple[str, str], salt: str) -> float:
    d = hashlib.sha1(f"{salt}\t{key[0]}\t{key[1]}".encode()).digest()
    return int.from_bytes(d[:8], "big") / 2**64


def select_pairs(pairs: list[Pair], cfg: Config) -> list[Pair]:
    """The pairs to annotate (``annotate.split`` of the query split, capped by ``annotate.max_pairs``),
    without labels, duplicates removed (first occurrence kept)."""
    if cfg.annotate.split != "all":
        splits = split_pairs(pairs, cfg.data)
        pairs = splits.logs if cfg.annotate.split == "logs" else splits.train
    seen: set[tuple[str, str]] = set()
    unique = [p for p in pairs if not (pair_key(p) in seen or seen.add(pair_key(p)))]  # type: ignore[func-returns-value]
    if cfg.annotate.max_pairs and len(unique) > cfg.annotate.max_pairs:
        ranked = sorted(unique, key=lambda p: _stable_fraction(pair_key(p), "annotate"))
        keep = {pair_key(p) for p in ranked[:cfg.annotate.max_pairs]}
        unique = [p for p in unique if pair_key(p) in keep]
    return hide_labels(unique)


def _record(pair: Pair, ans: Any, teacher_id: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    probs = getattr(ans, "label_probs", None)
    return {
        "query_id": pair.query_id, "item_id": pair.item_id,
        "label": getattr(ans, "label", None),
        "label_probs": [float(x) for x in probs] if probs is not None else None,
        "reasoning": getattr(ans, "reasoning", "") or "",
        "parse_error": getattr(ans, "parse_error", None),
        "raw": getattr(ans, "raw", None),
        "forced_label": bool(getattr(ans, "forced_label", False)),
        "prompt_tokens": int(getattr(ans, "prompt_tokens", 0) or 0),
        "generated_tokens": int(getattr(ans, "generated_tokens", 0) or 0),
        "teacher": teacher_id, "generation": settings,
    }


def _check_manifest(path: Path, manifest: dict[str, Any]) -> None:
    if not path.exists():
        write_json_atomic(manifest, path)
        return
    old = json.loads(path.read_text(encoding="utf-8"))
    for field in ("expected", "num_shards", "teacher", "generation"):
        if old.get(field) != manifest[field]:
            raise AnnotationError(
                f"{path}: this shard was started with a different {field!r}; resuming would mix two runs "
                "(use a fresh --out directory)")


def _resume_point(path: Path, expected: list[tuple[str, str]]) -> tuple[int, int | None]:
    """Number of complete records (a checked prefix of ``expected``), after cutting off a torn line."""
    content = read_shard_file(path)
    for i, rec in enumerate(content.records):
        key = (rec["query_id"], rec["item_id"])
        if i >= len(expected) or key != expected[i]:
            raise AnnotationError(f"{path}:{rec['_line']}: record {key} is not pair {i} of this shard's order "
                                  "(the file was edited or belongs to another run)")
    if content.torn_line is not None:
        truncate_to(path, content.complete_bytes)
    return len(content.records), content.torn_line


def _phases(timing: Any, before: dict[str, float]) -> dict[str, float]:
    """Prefill and decoding time and tokens of this run, from the decoder's clock."""
    if timing is None:
        return {}
    now = dataclasses.asdict(timing)
    delta = {k: now[k] - before[k] for k in now}
    return {"prefill_seconds": delta["prefill_seconds"], "prefill_tokens": delta["prompt_tokens"],
            "decode_seconds": delta["decode_seconds"], "decode_tokens": delta["decode_tokens"]}


def annotate_shard(teacher: TeacherLike, pairs: list[Pair], shard: int, num_shards: int, out_dir: str | Path,
                   cfg: Config, data_name: str = "") -> ShardResult:
    """Annotate this shard's share of ``pairs`` into ``out_dir``, resuming after its last complete record."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = shard_paths(out, shard, num_shards)
    mine = partition(pairs, shard, num_shards)
    expected = [pair_key(p) for p in mine]
    settings = {"batch_size": cfg.annotate.batch_size}
    teacher_id = teacher.identity()
    _check_manifest(paths.manifest, {
        "shard": shard, "num_shards": num_shards, "data": data_name, "split": cfg.annotate.split,
        "input_pairs": len(pairs), "expected": [list(k) for k in expected], "teacher": teacher_id,
        "generation": settings,
    })
    done, torn = _resume_point(paths.records, expected)
    bs = cfg.annotate.batch_size
    timing = getattr(getattr(teacher, "decoder", None), "timing", None)  # the LLM teacher's phase clock
    phase0 = dataclasses.asdict(timing) if timing is not None else {}
    t0, cpu0 = time.perf_counter(), time.process_time()
    written = prompt_tok = gen_tok = 0
    starts = range((done // bs) * bs, len(mine), bs)
    for start in tqdm(starts, desc=f"annotate shard {shard}/{num_shards}", unit="batch", leave=False):
        batch = mine[start:start + bs]
        answers = teacher.answer(batch, bs)
        if len(answers) != len(batch):
            raise RuntimeError(f"teacher returned {len(answers)} answers for {len(batch)} pairs")
        skip = max(0, done - start)  # records of this batch already on disk before the crash
        recs = [_record(p, a, teacher_id, settings) for p, a in zip(batch, answers, strict=True)]
        append_records(paths.records, recs[skip:], fsync=cfg.annotate.fsync)
        written += len(recs) - skip
        prompt_tok += sum(r["prompt_tokens"] for r in recs)
        gen_tok += sum(r["generated_tokens"] for r in recs)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0
    result = ShardResult(shard, num_shards, len(mine), done, written, torn, seconds, prompt_tok, gen_tok,
                         str(paths.records))
    if written or torn:
        regenerated = max(0, len(mine) - (done // bs) * bs)  # including the redone part of a batch
        append_records(paths.stats, [{"pairs_generated": regenerated, "seconds": seconds, "cpu_seconds": cpu_seconds,
                                      "prompt_tokens": prompt_tok, "generated_tokens": gen_tok,
                                      "resumed_after": done, **_phases(timing, phase0)}])
    return result
