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


def test_the_cli_accepts_a_registered_backend_name(registered: list[str]) -> None:
    """``--teacher exact:http://host:8000/v1`` is not a path: the CLI hands it to the backend, not to the path check."""
    from distillery.commands._common import check_teacher

    check_teacher("exact:http://127.0.0.1:8000/v1")
    with pytest.raises(FileNotFoundError, match="no such directory"):
        check_teacher("unregistered:http://127.0.0.1:8000/v1")


def test_raw_scores_and_arrays_become_records_the_shard_reader_accepts() -> None:
    import numpy as np

    from distillery.annotation.run import _probs

    assert _probs([2.0, 1.0, 1.0], 3) == [0.5, 0.25, 0.25]  # raw scores: normalised into [0, 1]
    assert _probs(np.array([0.2, 0.3, 0.5]), 3) == [0.2, 0.3, 0.5]  # a backend's numpy array is kept
    assert _probs([0.2, 0.3, 0.5], 3) == [0.2, 0.3, 0.5]  # a softmax is written as given
    assert _probs([1.0, float("nan"), 0.0], 3) is None and _probs("abc", 3) is None and _probs([0, 0, 0], 3) is None
