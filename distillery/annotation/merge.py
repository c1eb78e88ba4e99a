"""Merge annotation shards into one JSONL file, after checking that every input pair is there exactly once.

Each shard's manifest lists the pairs the shard owns; the merge fails — naming the shard files, the
missing and the duplicated ``(query_id, item_id)`` ids — when a shard is absent, incomplete, torn, or a
pair appears twice.  It reports the label distribution, parse failures and throughput.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distillery.annotation.shards import (
    AnnotationError,
    Key,
    ShardPaths,
    read_shard_file,
    shard_paths,
    strip_private,
)

SHOW = 10  # ids named in an error message before "… and N more"


@dataclass
class MergeReport:
    records: int
    shards: int
    labels: dict[str, int]
    parse_failures: int
    pairs_per_second: float
    """Pairs per second of one shard (sum of pairs over sum of shard seconds)."""
    pairs_per_second_all_shards: float
    """Sum over shards of each shard's rate: the throughput with the shards running side by side."""
    prompt_tokens_per_second: float
    generated_tokens_per_second: float
    generated_tokens_per_cpu_second: float = 0.0
    """Generated tokens per second of CPU time the shard processes spent (per busy core with 1 thread)."""
    pairs_per_cpu_second: float = 0.0
    decode_tokens_per_second: float = 0.0
    """Tokens per second of the decoding steps alone, per shard (prefill excluded; 0 when not recorded)."""
    prefill_tokens_per_second: float = 0.0
    """Prompt tokens per second of the prefill passes alone, per shard."""
    teacher: dict[str, Any] = field(default_factory=dict)
    issues: dict[str, int] = field(default_factory=dict)
    """Records by what was odd about the model's answer (``distillery.annotation.run.ISSUES``)."""
    hardware: list[str] = field(default_factory=list)
    """The machines that annotated: CPU model, ISA and tracked flags (one line per distinct machine)."""
    decoder_dtype: list[str] = field(default_factory=list)
    """The precision(s) the decoder ran in."""
    label_agreement: float | None = None
    """Share of labelled records whose free text names the same label as the label position chose (None: no
    record says)."""
    requests_per_second: float = 0.0
    """An inference engine's requests per second of waiting on it (0: the in-process teacher)."""
    engine_tokens_per_second: float = 0.0
    """Completion tokens per second the engine reported (label reads included)."""

    def to_markdown(self) -> str:
        rows = "\n".join(f"| {k} | {v} | {v / max(1, self.records):.1%} |" for k, v in sorted(self.labels.items()))
        odd = ", ".join(f"{k} {v}" for k, v in sorted(self.issues.items())) or "none"
        machines = "\n".join(f"- {line}" for line in self.hardware) or "- not recorded"
        return (f"# Annotation merge\n\n{self.records} records from {self.shards} shard(s); parse failures "
                f"{self.parse_failures} ({self.parse_failures / max(1, self.records):.1%}); reasoning/label "
                f"agreement {_share(self.label_agreement)}.\n\n"
                f"| label | pairs | share |\n|---|---|---|\n{rows}\n\n"
                f"Throughput per shard: {self.pairs_per_second:.2f} pairs/s, {self.prompt_tokens_per_second:.0f} "
                f"prompt tokens/s, {self.generated_tokens_per_second:.1f} generated tokens/s; all shards side by "
                f"side: {self.pairs_per_second_all_shards:.2f} pairs/s. Per CPU-second: "
                f"{self.pairs_per_cpu_second:.2f} pairs, {self.generated_tokens_per_cpu_second:.1f} "
                f"generated tokens. Phases: prefill {self.prefill_tokens_per_second:.0f} prompt tokens/s, "
                f"decoding {self.decode_tokens_per_second:.0f} tokens/s.{self._engine_line()}\n\n"
                f"Odd answers (kept, cleaned or nulled; records by reason): {odd}.\n\n"
                f"Decoder precision: {', '.join(self.decoder_dtype) or 'not recorded'}. Hardware:\n{machines}\n")


    def _engine_line(self) -> str:
        if not self.requests_per_second:
            return ""
        return (f" Engine: {self.requests_per_second:.2f} requests/s, {self.engine_tokens_per_second:.1f} "
                "completion tokens/s.")


def _share(x: float | None) -> str:
    return "not recorded" if x is None else f"{x:.1%}"


def agreement(records: list[dict[str, Any]]) -> float | None:
    """Share of labelled records whose text's own label is the chosen one (records that record it)."""
    known = [r for r in records if r.get("label") and "disagreement" in r]
    return sum(not r["disagreement"] for r in known) / len(known) if known else None


def _names(keys: list[Key]) -> str:
    shown = ", ".join(f"{q}/{i}" for q, i in keys[:SHOW])
    return shown + (f" … and {len(keys) - SHOW} more" if len(keys) > SHOW else "")


def _manifests(in_dir: Path) -> tuple[int, dict[int, dict[str, Any]]]:
    found = sorted(in_dir.glob("shard-*-of-*.manifest.json"))
    if not found:
        raise AnnotationError(f"{in_dir}: no shard manifests (shard-*-of-*.manifest.json); nothing to merge")
    manifests = {}
    counts = set()
    for path in found:
        try:
            m = json.loads(path.read_text(encoding="utf-8"))
            counts.add(int(m["num_shards"]))
            manifests[int(m["shard"])] = m
            if not isinstance(m["expected"], list) or not isinstance(m["input_pairs"], int):
                raise TypeError("'expected' must be a list and 'input_pairs' an integer")
        except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            what = f"field {exc} is missing" if isinstance(exc, KeyError) else " ".join(str(exc).split())
            raise AnnotationError(f"{path}: malformed shard manifest ({what}); rerun that shard") from None
    if len(counts) != 1:
        raise AnnotationError(f"{in_dir}: shards of different --num-shards ({sorted(counts)}) in one directory")
    return counts.pop(), manifests


def _stats_lines(path: Path) -> list[dict[str, Any]]:
    """Timing lines of a shard's sessions (a torn last line, from a killed session, is ignored)."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")[:-1]  # the part after the last newline is empty or torn
    return [json.loads(line) for line in lines if line.strip()]


def _throughput(paths: list[ShardPaths]) -> dict[str, float]:
    """Rates over the shards' generation time (model loading excluded); CPU time gives the rate per busy core,
    which a machine shared with other work does not distort."""
    rates, pairs, secs, cpu, ptok, gtok = [], 0, 0.0, 0.0, 0, 0
    phase = {"decode_seconds": 0.0, "decode_tokens": 0.0, "prefill_seconds": 0.0, "prefill_tokens": 0.0,
             "engine_requests": 0.0, "engine_seconds": 0.0, "engine_completion_tokens": 0.0}
    for sp in paths:
        s_pairs, s_secs = 0, 0.0
        for rec in _stats_lines(sp.stats):
            s_pairs += int(rec.get("pairs_generated", 0))
            s_secs += float(rec.get("seconds", 0.0))
            cpu += float(rec.get("cpu_seconds", 0.0))
            ptok += int(rec.get("prompt_tokens", 0))
            gtok += int(rec.get("generated_tokens", 0))
            for k in phase:
                phase[k] += float(rec.get(k, 0.0))
        pairs, secs = pairs + s_pairs, secs + s_secs
        if s_secs > 0:
            rates.append(s_pairs / s_secs)
    if secs <= 0:
        return {}
    return {"pairs_per_second": pairs / secs, "pairs_per_second_all_shards": sum(rates),
            "prompt_tokens_per_second": ptok / secs, "generated_tokens_per_second": gtok / secs,
            "generated_tokens_per_cpu_second": _rate(gtok, cpu),
            "pairs_per_cpu_second": _rate(pairs, cpu),
            "decode_tokens_per_second": _rate(phase["decode_tokens"], phase["decode_seconds"]),
            "prefill_tokens_per_second": _rate(phase["prefill_tokens"], phase["prefill_seconds"]),
            "requests_per_second": _rate(phase["engine_requests"], phase["engine_seconds"]),
            "engine_tokens_per_second": _rate(phase["engine_completion_tokens"], phase["engine_seconds"])}


def _machines(paths: list[ShardPaths], records: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Distinct hardware lines and decoder dtypes of the shards' sessions (dtype: from the teacher identity
    of the records when no session recorded one)."""
    lines: dict[str, None] = {}
    dtypes: dict[str, None] = {}
    for sp in paths:
        for rec in _stats_lines(sp.stats):
            if rec.get("hardware"):
                lines[str(rec["hardware"])] = None
            if rec.get("dtype"):
                dtypes[str(rec["dtype"])] = None
    if not dtypes:
        for rec in records:
            found = (rec.get("teacher") or {}).get("dtype") if isinstance(rec.get("teacher"), dict) else None
            if found:
                dtypes[str(found).removeprefix("torch.")] = None
    return list(lines), list(dtypes)


def _rate(n: float, seconds: float) -> float:
    return n / seconds if seconds > 0 else 0.0


def merge_shards(in_dir: str | Path, out_file: str | Path) -> MergeReport:
    """Check the shard set in ``in_dir`` and write every record, once, to ``out_file``."""
    src = Path(in_dir)
    num_shards, manifests = _manifests(src)
    problems: list[str] = []
    records: list[dict[str, Any]] = []
    seen: Counter[Key] = Counter()
    expected: list[Key] = []
    all_paths = [shard_paths(src, k, num_shards) for k in range(num_shards)]
    for k, sp in enumerate(all_paths):
        if k not in manifests or not sp.records.exists():
            problems.append(f"shard {k} of {num_shards} is missing ({sp.records.name} not found)")
            continue
        expected += [tuple(x) for x in manifests[k]["expected"]]
        content = read_shard_file(sp.records)
        if content.torn_line is not None:
            problems.append(f"{sp.records}:{content.torn_line}: half-written last record; rerun shard {k} to finish it")
        for rec in content.records:
            seen[(rec["query_id"], rec["item_id"])] += 1
            records.append(strip_private(rec))
    if missing_shards := [k for k in range(num_shards) if k not in manifests]:
        totals = {m["input_pairs"] for m in manifests.values()}
        problems.append(f"{sum(len(m['expected']) for m in manifests.values())} of {totals.pop()} input pairs "
                        f"belong to the present shards; shard(s) {missing_shards} never started")
    duplicated = sorted(key for key, n in seen.items() if n > 1)
    if duplicated:
        problems.append(f"{len(duplicated)} pair(s) annotated more than once: {_names(duplicated)}")
    missing = [key for key in expected if key not in seen]
    if missing:
        problems.append(f"{len(missing)} pair(s) missing: {_names(missing)}")
    unexpected = sorted(set(seen) - set(expected))
    if unexpected:
        problems.append(f"{len(unexpected)} record(s) of pairs no shard owns: {_names(unexpected)}")
    if problems:
        raise AnnotationError(f"merge {src}: " + "; ".join(problems))
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(out)
    t = _throughput(all_paths)
    machines, dtypes = _machines(all_paths, records)
    issues = Counter(str(i) for r in records for i in (r.get("issues") or []) if isinstance(r.get("issues"), list))
    report = MergeReport(
        len(records), num_shards, dict(Counter(str(r["label"]) for r in records)),
        sum(1 for r in records if r.get("parse_error")), t.get("pairs_per_second", 0.0),
        t.get("pairs_per_second_all_shards", 0.0), t.get("prompt_tokens_per_second", 0.0),
        t.get("generated_tokens_per_second", 0.0), t.get("generated_tokens_per_cpu_second", 0.0),
        t.get("pairs_per_cpu_second", 0.0), t.get("decode_tokens_per_second", 0.0),
        t.get("prefill_tokens_per_second", 0.0), teacher=records[0].get("teacher", {}) if records else {},
        issues=dict(sorted(issues.items())), hardware=machines, decoder_dtype=dtypes,
        label_agreement=agreement(records), requests_per_second=t.get("requests_per_second", 0.0),
        engine_tokens_per_second=t.get("engine_tokens_per_second", 0.0),
    )
    out.with_suffix(".report.md").write_text(report.to_markdown(), encoding="utf-8")
    out.with_suffix(".report.json").write_text(json.dumps(report.__dict__, indent=1), encoding="utf-8")
    return report


def load_annotations(path: str | Path) -> dict[Key, dict[str, Any]]:
    """A merged annotation file by ``(query_id, item_id)``; a malformed line is named by file and line."""
    content = read_shard_file(path)
    if not Path(path).exists():
        raise FileNotFoundError(f"--annotations {path}: no such file")
    if content.torn_line is not None:
        raise AnnotationError(f"{path}:{content.torn_line}: half-written last record")
    out: dict[Key, dict[str, Any]] = {}
    for rec in content.records:
        key = (rec["query_id"], rec["item_id"])
        if key in out:
            raise AnnotationError(f"{path}:{rec['_line']}: pair {key[0]}/{key[1]} annotated twice")
        out[key] = strip_private(rec)
    return out
