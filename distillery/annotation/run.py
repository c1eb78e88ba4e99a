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
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tqdm.auto import tqdm

from distillery import hardware
from distillery.annotation.shards import (
    AnnotationError,
    append_records,
    encode_records,
    pair_key,
    partition,
    read_shard_file,
    shard_paths,
    truncate_to,
    write_json_atomic,
)
from distillery.config import Config
from distillery.data.schema import LabelSet, Pair, get_label_set
from distillery.data.splits import Splits, hide_labels, split_pairs
from distillery.teacher.prompt import clean_text, parse_error_code

if TYPE_CHECKING:
    from distillery.annotation.checkpoint import ShardCheckpoint


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
    issues: dict[str, int] = dataclasses.field(default_factory=dict)
    """Odd model outputs among the records written now, by reason (:data:`ISSUES`): kept, cleaned or nulled,
    never dropped; a record lists its own under ``issues``."""
    dtype: str | None = None
    """The precision the decoder ran in (its weights' dtype), ``None`` for a teacher without weights."""
    hardware: dict[str, Any] = dataclasses.field(default_factory=dict)
    """:func:`distillery.hardware.describe` of the machine that annotated: model, ISA, tracked flags."""
    checkpoint: str | None = None
    """The artifact-store prefix the records were checkpointed to (``None``: local disk only)."""
    restored: int = 0
    """Records the artifact store held when the shard started (a restarted pod resumes after them)."""
    engine: dict[str, float] = dataclasses.field(default_factory=dict)
    """An inference engine's figures (requests, requests/s, tokens/s: :func:`_engine_rates`); empty in-process."""


def _stable_fraction(key: tuple[str, str], salt: str) -> float:
    d = hashlib.sha1(f"{salt}\t{key[0]}\t{key[1]}".encode()).digest()
    return int.from_bytes(d[:8], "big") / 2**64


def select_pairs(pairs: list[Pair] | Splits, cfg: Config) -> list[Pair]:
    """The pairs to annotate (``annotate.split`` of the query split, capped by ``annotate.max_pairs``),
    without labels, duplicates removed (first occurrence kept).  ``pairs`` is split by query unless it is
    already a split; for ``annotate.split=all`` give the pairs in load order (a split regroups them)."""
    if isinstance(pairs, Splits) or cfg.annotate.split != "all":
        splits = pairs if isinstance(pairs, Splits) else split_pairs(pairs, cfg.data)
        if cfg.annotate.split == "all":
            pairs = splits.train + splits.val + splits.test
        else:
            pairs = splits.logs if cfg.annotate.split == "logs" else splits.train
    seen: set[tuple[str, str]] = set()
    unique = [p for p in pairs if not (pair_key(p) in seen or seen.add(pair_key(p)))]  # type: ignore[func-returns-value]
    if cfg.annotate.max_pairs and len(unique) > cfg.annotate.max_pairs:
        ranked = sorted(unique, key=lambda p: _stable_fraction(pair_key(p), "annotate"))
        keep = {pair_key(p) for p in ranked[:cfg.annotate.max_pairs]}
        unique = [p for p in unique if pair_key(p) in keep]
    return hide_labels(unique)


MAX_REASONING_CHARS = 4000
"""A record keeps this much of a reasoning (a student reads at most ``distill.reasoning_tokens`` of it)."""
MAX_RAW_CHARS = 8000
ISSUES = ("label_outside_set", "label_missing", "no_label_line", "unknown_label", "conflicting_labels",
          "parse_error_other", "label_probs_invalid", "reasoning_empty", "reasoning_truncated", "raw_truncated",
          "control_characters_removed", "field_missing", "text_label_disagrees")
"""What a record may say about its answer (``issues``), counted per shard and in the merge report."""


def _field(ans: Any, name: str) -> tuple[Any, bool]:
    """(value, present) of an answer's field: an attribute, or a key of a mapping."""
    if isinstance(ans, Mapping):
        return ans.get(name), name in ans
    return getattr(ans, name, None), hasattr(ans, name)


def _count(value: Any) -> int:
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError, OverflowError):
        return 0


def _text(value: Any, limit: int, name: str, issues: list[str]) -> str:
    text = clean_text(value)
    if len(text) != len(value if isinstance(value, str) else text):
        issues.append("control_characters_removed")
    if len(text) > limit:
        issues.append(f"{name}_truncated")
        text = text[:limit]
    return text


def _probs(value: Any, num_classes: int) -> list[float] | None:
    """The label distribution when it is one: ``num_classes`` finite, non-negative numbers (a list, a tuple or a
    numpy array) with a positive sum, normalised to sum to 1 — so that a backend returning raw scores writes
    records that the shard reader (values in [0, 1]) accepts on resume and merge."""
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__len__") or len(value) != num_classes:
        return None
    try:
        probs = [float(x) for x in value]
    except (TypeError, ValueError):
        return None
    total = sum(probs)
    if not all(math.isfinite(x) and x >= 0 for x in probs) or not total > 0 or not math.isfinite(total):
        return None
    # A softmax already sums to 1 (to rounding): kept as given, so records stay byte-identical across backends.
    return probs if abs(total - 1.0) <= 1e-6 else [x / total for x in probs]


def _record(pair: Pair, ans: Any, teacher_id: dict[str, Any], settings: dict[str, Any],
            label_set: LabelSet) -> dict[str, Any]:
    """One JSONL record of an answer, whatever the model wrote: a label outside the label set becomes no label
    with a parse error naming it, text fields are cleaned and capped, a malformed ``label_probs`` is nulled;
    each such fix is listed in the record's ``issues``."""
    issues: list[str] = []
    if any(not _field(ans, f)[1] for f in ("label", "label_probs", "reasoning")):
        issues.append("field_missing")
    label, _ = _field(ans, "label")
    error = _field(ans, "parse_error")[0]
    error = clean_text(error)[:500] if error is not None else None
    if label is not None and (not isinstance(label, str) or not label_set.knows(label)):
        issues.append("label_outside_set")
        error = error or (f"label {clean_text(label)[:40]!r} is outside the {label_set.name} label set "
                          f"({', '.join(label_set.classes)})")
        label = None
    elif label is not None:
        label = label_set.classes[label_set.index(label)]
    elif error is None:
        issues.append("label_missing")
        error = "no label in the answer"
    if label is None and error and "label_outside_set" not in issues and "label_missing" not in issues:
        code = parse_error_code(error)
        issues.append(code if code != "other" else "parse_error_other")
    raw_probs, _ = _field(ans, "label_probs")
    probs = _probs(raw_probs, label_set.num_classes)
    if raw_probs is not None and probs is None:
        issues.append("label_probs_invalid")
    reasoning = _text(_field(ans, "reasoning")[0], MAX_REASONING_CHARS, "reasoning", issues)
    if not reasoning.strip():
        issues.append("reasoning_empty")
    raw, _ = _field(ans, "raw")
    disagreement = _field(ans, "disagreement")[0]
    if label is not None and disagreement:
        issues.append("text_label_disagrees")
    written = _field(ans, "written_label")[0]
    return {
        "query_id": pair.query_id, "item_id": pair.item_id,
        "label": label, "label_probs": probs, "reasoning": reasoning, "parse_error": error,
        "raw": _text(raw, MAX_RAW_CHARS, "raw", issues) if raw is not None else None,
        "forced_label": bool(_field(ans, "forced_label")[0]),
        # What the free text itself says, for the reasoning/label agreement figure (the label above is the
        # distribution's argmax at the label position).
        "written_label": written if isinstance(written, str) and label_set.knows(written) else None,
        "disagreement": clean_text(disagreement)[:40] if disagreement else None,
        "prompt_tokens": _count(_field(ans, "prompt_tokens")[0]),
        "generated_tokens": _count(_field(ans, "generated_tokens")[0]),
        "issues": sorted(set(issues)),
        "teacher": teacher_id, "generation": settings,
    }


def _dtype(teacher: Any, teacher_id: dict[str, Any]) -> str | None:
    """The dtype the decoder really ran in: the teacher's weights, else what its identity says."""
    model = getattr(teacher, "model", None)
    try:
        found = str(next(iter(model.parameters())).dtype) if model is not None else teacher_id.get("dtype")
    except (AttributeError, StopIteration, TypeError):
        found = teacher_id.get("dtype")
    return str(found).removeprefix("torch.") if found else None


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


def _engine(teacher: Any) -> dict[str, float]:
    """An engine-backed teacher's request counters (its ``engine_stats``), empty for the in-process teacher."""
    stats = getattr(teacher, "engine_stats", None)
    return dict(stats.snapshot()) if stats is not None else {}


def _engine_rates(now: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    """This run's engine requests and tokens, and their rates over the time spent waiting on the engine."""
    if not now:
        return {}
    d = {k: now[k] - before.get(k, 0) for k in now}
    secs = d["seconds"]
    return {"engine_requests": d["requests"], "engine_label_reads": d["label_reads"], "engine_seconds": secs,
            "engine_prompt_tokens": d["prompt_tokens"], "engine_completion_tokens": d["completion_tokens"],
            "engine_retried": d.get("retried", 0),
            "requests_per_second": d["requests"] / secs if secs > 0 else 0.0,
            "engine_tokens_per_second": d["completion_tokens"] / secs if secs > 0 else 0.0}


def annotate_shard(teacher: TeacherLike, pairs: list[Pair], shard: int, num_shards: int, out_dir: str | Path,
                   cfg: Config, data_name: str = "", checkpoint: ShardCheckpoint | None = None) -> ShardResult:
    """Annotate this shard's share of ``pairs`` into ``out_dir``, resuming after its last complete record;
    with ``checkpoint`` each batch also goes to the artifact store, and a start in an empty ``out_dir`` resumes
    from there (:mod:`distillery.annotation.checkpoint`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = shard_paths(out, shard, num_shards)
    restored = checkpoint.restore(paths) if checkpoint else 0
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
    if checkpoint:
        checkpoint.save_manifest(paths.manifest)
        checkpoint.catch_up(paths.records, done)
    bs = cfg.annotate.batch_size
    timing = getattr(getattr(teacher, "decoder", None), "timing", None)  # the LLM teacher's phase clock
    phase0 = dataclasses.asdict(timing) if timing is not None else {}
    engine0 = _engine(teacher)
    t0, cpu0 = time.perf_counter(), time.process_time()
    written = prompt_tok = gen_tok = 0
    starts = range((done // bs) * bs, len(mine), bs)
    label_set = getattr(teacher, "label_set", None)
    if not isinstance(label_set, LabelSet):
        label_set = get_label_set(cfg.data.label_set)
    issues: Counter[str] = Counter()
    for start in tqdm(starts, desc=f"annotate shard {shard}/{num_shards}", unit="batch", leave=False):
        batch = mine[start:start + bs]
        answers = teacher.answer(batch, bs)
        if len(answers) != len(batch):
            raise RuntimeError(f"teacher returned {len(answers)} answers for {len(batch)} pairs")
        skip = max(0, done - start)  # records of this batch already on disk before the crash
        recs = [_record(p, a, teacher_id, settings, label_set) for p, a in zip(batch, answers, strict=True)]
        issues.update(i for r in recs[skip:] for i in r["issues"])
        append_records(paths.records, recs[skip:], fsync=cfg.annotate.fsync)
        if checkpoint:  # only after the local fsync: the store never holds a record the local file lacks
            checkpoint.push(encode_records(recs[skip:]), start + skip, len(recs) - skip)
        written += len(recs) - skip
        prompt_tok += sum(r["prompt_tokens"] for r in recs)
        gen_tok += sum(r["generated_tokens"] for r in recs)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0
    dtype, machine = _dtype(teacher, teacher_id), hardware.describe()
    engine = _engine_rates(_engine(teacher), engine0)
    result = ShardResult(shard, num_shards, len(mine), done, written, torn, seconds, prompt_tok, gen_tok,
                         str(paths.records), {k: issues[k] for k in ISSUES if issues[k]}, dtype, machine,
                         checkpoint.prefix if checkpoint else None, restored, engine=engine)
    if written or torn:
        regenerated = max(0, len(mine) - (done // bs) * bs)  # including the redone part of a batch
        append_records(paths.stats, [{"pairs_generated": regenerated, "seconds": seconds, "cpu_seconds": cpu_seconds,
                                      "prompt_tokens": prompt_tok, "generated_tokens": gen_tok,
                                      "resumed_after": done, **_phases(timing, phase0), **engine, "dtype": dtype,
                                      "hardware": hardware.cpu().line(), "isa": machine["isa"],
                                      "flags": machine["flags"]}])
    return result
