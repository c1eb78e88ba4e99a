"""Annotation records whatever the teacher wrote: labels outside the set, missing fields, runaway, empty or
control-character reasoning, malformed label_probs; each named and counted, none dropped, nothing crashes.
The shard result and the merge report state the hardware (ISA features) and the decoder's precision."""

from __future__ import annotations

import json
import math

import pytest
import torch

from distillery import hardware
from distillery.annotation import annotate_shard, load_annotations, merge_shards, shard_paths
from distillery.annotation.run import ISSUES, MAX_RAW_CHARS, MAX_REASONING_CHARS
from distillery.config import load_config
from distillery.data.schema import THREE_CLASS, Pair
from distillery.data.synthetic import generate
from distillery.teacher.inference import TeacherAnswer

ODD = [
    # (answer, issues the record must list)
    (TeacherAnswer("Maybe", [0.2, 0.3, 0.5], "ok", "Reasoning: ok\nLabel: Maybe", None, 10, 5), ["label_outside_set"]),
    (TeacherAnswer(None, [0.2, 0.3, 0.5], "ok", "Reasoning: ok", None, 10, 5), ["label_missing"]),
    (TeacherAnswer(None, [0.2, 0.3, 0.5], "r", "x", "unknown label 'Foo' (expected one of …)", 1, 1),
     ["unknown_label"]),
    (TeacherAnswer("Exact", [0.9, 0.1], "ok", "ok", None, 10, 5), ["label_probs_invalid"]),
    (TeacherAnswer("Exact", [math.nan, 0.1, 0.1], "ok", "ok", None, 10, 5), ["label_probs_invalid"]),
    (TeacherAnswer("exact", [0.8, 0.1, 0.1], "", "Label: exact", None, 10, 5), ["reasoning_empty"]),
    (TeacherAnswer("Partial", [0.1, 0.8, 0.1], "word " * 5000, "word " * 5000, None, 10, 5),
     ["raw_truncated", "reasoning_truncated"]),
    (TeacherAnswer("Irrelevant", [0.1, 0.1, 0.8], "a\x00b\x1b[0m\ud800c", "raw\x07\udc80", None, 10, 5),
     ["control_characters_removed"]),
    ({"label": "Exact", "raw": "Label: Exact"}, ["field_missing", "reasoning_empty"]),
    (object(), ["field_missing", "label_missing", "reasoning_empty"]),
]


class OddTeacher:
    """Answers from ``ODD`` by position; its weights are bf16, as the decoder on a native-bf16 CPU."""

    label_set = THREE_CLASS

    def __init__(self) -> None:
        self.model = torch.nn.Linear(2, 2).to(torch.bfloat16)

    def answer(self, pairs: list[Pair], batch_size: int) -> list[object]:
        return [ODD[int(p.item_id.split("-")[-1]) % len(ODD)][0] for p in pairs]

    def identity(self) -> dict[str, str]:
        return {"model": "odd", "dtype": "torch.bfloat16"}


@pytest.fixture()
def pairs() -> list[Pair]:
    return [Pair(f"q{i}", f"query {i}", f"item-{i}", title=f"title {i}") for i in range(len(ODD) * 2)]


def test_odd_answers_are_recorded_with_named_counted_reasons(tmp_path, pairs):
    cfg = load_config("tiny", overrides={"annotate": {"batch_size": 4, "split": "all"}})
    result = annotate_shard(OddTeacher(), pairs, 0, 1, tmp_path, cfg)
    assert result.written == len(pairs)  # nothing dropped
    expected: dict[str, int] = {}
    for _, issues in ODD:
        for i in issues:
            expected[i] = expected.get(i, 0) + 2
    assert result.issues == expected and set(result.issues) <= set(ISSUES)
    assert result.dtype == "bfloat16" and result.hardware == hardware.describe()
    raw_bytes = shard_paths(tmp_path, 0, 1).records.read_bytes()
    raw_bytes.decode("utf-8")  # valid UTF-8: the lone surrogates are gone
    records = {r["item_id"]: r for r in map(json.loads, raw_bytes.decode().splitlines())}
    for n, (_, issues) in enumerate(ODD):
        rec = records[f"item-{n}"]
        assert rec["issues"] == sorted(issues), n
        assert rec["label"] is None or rec["label"] in THREE_CLASS.classes
        assert rec["label"] is not None or rec["parse_error"]
        assert len(rec["reasoning"]) <= MAX_REASONING_CHARS and len(rec["raw"] or "") <= MAX_RAW_CHARS
        probs = rec["label_probs"]
        assert probs is None or (len(probs) == 3 and all(math.isfinite(x) for x in probs))
    outside = records["item-0"]
    assert outside["label"] is None and "'Maybe' is outside the 3class label set" in outside["parse_error"]
    assert records["item-5"]["label"] == "Exact"  # an alias of the set, written as its class name
    assert records["item-7"]["reasoning"] == "ab[0mc" and records["item-7"]["raw"] == "raw"
    # the merge counts the same reasons and states the machine and the precision
    report = merge_shards(tmp_path, tmp_path / "merged.jsonl")
    assert report.issues == expected and report.decoder_dtype == ["bfloat16"]
    assert report.hardware == [hardware.cpu().line()]
    md = (tmp_path / "merged.report.md").read_text()
    assert "label_outside_set 2" in md and "Decoder precision: bfloat16" in md and hardware.cpu().isa in md
    merged = json.loads((tmp_path / "merged.report.json").read_text())
    assert merged["issues"] == expected and merged["decoder_dtype"] == ["bfloat16"]
    assert len(load_annotations(tmp_path / "merged.jsonl")) == len(pairs)


def test_a_plain_teacher_records_no_issues_and_its_identity_dtype(tmp_path):
    class Plain:
        def answer(self, pairs: list[Pair], batch_size: int) -> list[TeacherAnswer]:
            return [TeacherAnswer("Exact", [0.8, 0.1, 0.1], "fine", "Reasoning: fine\nLabel: Exact", None, 9, 4)
                    for _ in pairs]

        def identity(self) -> dict[str, str]:
            return {"model": "plain", "dtype": "torch.float32"}

    cfg = load_config("tiny", overrides={"annotate": {"batch_size": 8, "split": "all"}})
    result = annotate_shard(Plain(), generate(20, seed=1), 0, 1, tmp_path, cfg)
    assert result.issues == {} and result.dtype == "float32"
    report = merge_shards(tmp_path, tmp_path / "merged.jsonl")
    assert report.issues == {} and "Odd answers (kept, cleaned or nulled; records by reason): none" in (
        tmp_path / "merged.report.md").read_text()
