"""Partition, append-only shard files, resume after a torn line, and merge validation (fake teacher, in-process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distillery.annotation import (
    AnnotationError,
    annotate_shard,
    load_annotations,
    merge_shards,
    pair_key,
    partition,
    read_shard_file,
    select_pairs,
    shard_of,
    shard_paths,
)
from distillery.config import load_config
from distillery.data.schema import Pair
from distillery.data.synthetic import generate
from distillery.teacher.inference import TeacherAnswer


class FakeTeacher:
    """Deterministic answers that depend on the pair only; counts the pairs it was asked about."""

    def __init__(self) -> None:
        self.asked = 0

    def answer(self, pairs: list[Pair], batch_size: int) -> list[TeacherAnswer]:
        self.asked += len(pairs)
        out = []
        for p in pairs:
            k = shard_of(pair_key(p), 3)
            label = ("Exact", "Partial", "Irrelevant")[k]
            probs = [0.1, 0.1, 0.1]
            probs[k] = 0.8
            out.append(TeacherAnswer(label, probs, f"the item {p.title} for {p.query}", f"Reasoning: …\nLabel: {label}",
                                  "no 'Label:' line" if k == 2 and len(p.query) % 5 == 0 else None, 40, 12))
        return out

    def identity(self) -> dict[str, str]:
        return {"model": "fake", "version": "1"}


@pytest.fixture()
def cfg():
    return load_config("tiny", overrides={"annotate": {"batch_size": 4, "split": "all"}})


@pytest.fixture(scope="module")
def pairs() -> list[Pair]:
    return generate(60, seed=3)


def test_partition_is_complete_disjoint_and_order_free(pairs):
    shards = [partition(pairs, k, 4) for k in range(4)]
    keys = [pair_key(p) for s in shards for p in s]
    assert sorted(keys) == sorted(pair_key(p) for p in pairs)
    assert len(set(keys)) == len(keys)
    reversed_shards = [partition(pairs[::-1], k, 4) for k in range(4)]
    assert [{pair_key(p) for p in s} for s in shards] == [{pair_key(p) for p in s} for s in reversed_shards]
    with pytest.raises(ValueError, match="--shard 4"):
        partition(pairs, 4, 4)


def test_select_pairs_hides_labels_and_caps(pairs):
    cfg = load_config("tiny", overrides={"annotate": {"split": "logs", "max_pairs": 10}})
    chosen = select_pairs(pairs, cfg)
    assert len(chosen) == 10 and all(p.label is None for p in chosen)
    assert [pair_key(p) for p in chosen] == [pair_key(p) for p in select_pairs(pairs, cfg)]


def test_resume_after_torn_line_equals_uninterrupted_run(tmp_path, pairs, cfg):
    ref_dir, crash_dir = tmp_path / "ref", tmp_path / "crash"
    annotate_shard(FakeTeacher(), pairs, 0, 2, ref_dir, cfg)
    ref = shard_paths(ref_dir, 0, 2).records.read_bytes()
    # A crash mid-write: 6 complete records (1.5 batches) and half of the 7th line, without its newline.
    lines = ref.split(b"\n")
    crash_dir.mkdir()
    shard_paths(crash_dir, 0, 2).records.write_bytes(b"\n".join(lines[:6]) + b"\n" + lines[6][:25])
    teacher = FakeTeacher()
    result = annotate_shard(teacher, pairs, 0, 2, crash_dir, cfg)
    assert result.already_done == 6 and result.torn_line_redone == 7
    assert teacher.asked == len(partition(pairs, 0, 2)) - 4  # resumed from the batch holding record 7
    assert shard_paths(crash_dir, 0, 2).records.read_bytes() == ref
    again = annotate_shard(FakeTeacher(), pairs, 0, 2, crash_dir, cfg)  # a finished shard does nothing
    assert again.written == 0 and shard_paths(crash_dir, 0, 2).records.read_bytes() == ref


def test_merge_checks_every_pair_once(tmp_path, pairs, cfg):
    for k in range(3):
        annotate_shard(FakeTeacher(), pairs, k, 3, tmp_path, cfg)
    report = merge_shards(tmp_path, tmp_path / "merged.jsonl")
    assert report.records == len(pairs) and report.shards == 3
    assert sum(report.labels.values()) == len(pairs) and report.parse_failures > 0
    assert report.pairs_per_second > 0
    merged = load_annotations(tmp_path / "merged.jsonl")
    assert set(merged) == {pair_key(p) for p in pairs}
    assert (tmp_path / "merged.report.md").read_text().count("|") > 6


def test_merge_names_a_missing_shard_and_missing_ids(tmp_path, pairs, cfg):
    for k in (0, 2):
        annotate_shard(FakeTeacher(), pairs, k, 3, tmp_path, cfg)
    with pytest.raises(AnnotationError, match=r"shard 1 of 3 is missing \(shard-00001-of-00003.jsonl"):
        merge_shards(tmp_path, tmp_path / "merged.jsonl")
    # The shard started (manifest written) but died before its first record: its pairs are named.
    annotate_shard(FakeTeacher(), pairs, 1, 3, tmp_path, cfg)
    path = shard_paths(tmp_path, 1, 3).records
    first = json.loads(path.read_text().splitlines()[0])
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines()[1:]))
    with pytest.raises(AnnotationError, match=f"1 pair\\(s\\) missing: {first['query_id']}/{first['item_id']}"):
        merge_shards(tmp_path, tmp_path / "merged.jsonl")


def test_merge_names_duplicates_and_malformed_lines(tmp_path, pairs, cfg):
    annotate_shard(FakeTeacher(), pairs, 0, 1, tmp_path, cfg)
    path: Path = shard_paths(tmp_path, 0, 1).records
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, lines[2]]) + "\n")
    dup = json.loads(lines[2])
    with pytest.raises(AnnotationError, match=f"1 pair\\(s\\) annotated more than once: {dup['query_id']}/"):
        merge_shards(tmp_path, tmp_path / "merged.jsonl")
    path.write_text("\n".join([*lines[:4], '{"query_id": "q", "item_id": "i"}', *lines[4:]]) + "\n")
    with pytest.raises(AnnotationError, match=r"shard-00000-of-00001.jsonl:5: malformed record \(missing field"):
        merge_shards(tmp_path, tmp_path / "merged.jsonl")
    path.write_text("\n".join([*lines[:2], "{not json", *lines[2:]]) + "\n")
    with pytest.raises(AnnotationError, match=r"shard-00000-of-00001.jsonl:3: malformed record \(not JSON"):
        read_shard_file(path)


def test_resume_refuses_a_different_run(tmp_path, pairs, cfg):
    annotate_shard(FakeTeacher(), pairs[:30], 0, 1, tmp_path, cfg)
    with pytest.raises(AnnotationError, match="different 'expected'"):
        annotate_shard(FakeTeacher(), pairs, 0, 1, tmp_path, cfg)
