"""The Teacher protocol: the local LM is one backend; an inference-only backend annotates and is evaluated too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from distillery.config import Config, load_config
from distillery.data.schema import THREE_CLASS, LabelSet, Pair
from distillery.stages import annotate, data, teacher
from distillery.teacher import protocol
from distillery.teacher.inference import TeacherAnswer


class AlwaysExact:
    """An inference-only teacher (no weights, nothing to train), as an endpoint client would be."""

    label_set: LabelSet = THREE_CLASS

    def answer(self, pairs: list[Pair], batch_size: int | None = None, progress: bool = False) -> list[TeacherAnswer]:
        return [TeacherAnswer("Exact", [0.9, 0.05, 0.05], f"{p.title} matches {p.query}",
                              f"Reasoning: {p.title} matches {p.query}\nLabel: Exact", None, 10, 6) for p in pairs]

    def identity(self) -> dict[str, Any]:
        return {"model": "always-exact", "dtype": None}


@pytest.fixture()
def registered(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    names: list[str] = []

    def backend(name: str, cfg: Config) -> protocol.Teacher:
        names.append(name)
        return AlwaysExact()

    monkeypatch.setitem(protocol.BACKENDS, "exact", backend)
    return names


def test_the_local_lm_satisfies_the_protocol() -> None:
    t = protocol.open_teacher("tiny", load_config("tiny"))
    assert isinstance(t, protocol.Teacher) and t.label_set.name == "3class"


def test_a_registered_backend_annotates_and_is_evaluated(tmp_path: Path, registered: list[str]) -> None:
    cfg = load_config("tiny", overrides={"annotate": {"max_pairs": 6}})
    data.prepare(cfg, "synthetic:120", tmp_path / "dataset")
    m = annotate.annotate_shard(cfg, "exact:v1", tmp_path / "dataset", 0, 1, tmp_path / "shard",
                                metrics_dir=tmp_path / "shard")
    assert m["teacher"] == "exact:v1" and m["written"] == 6 and m["dtype"] is None
    merged = annotate.merge_dirs([str(tmp_path / "shard")], tmp_path / "annotations")
    assert merged["records"] == 6
    records = [json.loads(line) for line in (tmp_path / "annotations" / "annotations.jsonl").open()]
    assert {r["label"] for r in records} == {"Exact"}
    ev = teacher.evaluate(cfg, "exact:v1", tmp_path / "dataset", tmp_path / "eval", max_pairs=5)
    assert ev["n"] == 5 and ev["parse_failure_rate"] == 0.0 and ev["teacher"]["model"] == "always-exact"
    assert registered == ["v1", "v1"]
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["macro_f1"] == ev["macro_f1"]
