"""The A/B stage, the one implementation behind ``distillery abtest`` and the pipeline's A/B step, in process
with the reference rankers (no models, no Triton): its inputs, its files and the metrics it returns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distillery.config import load_config
from distillery.stages import data
from distillery.stages.abtest import abtest, search_queries

SMALL = {"abtest": {"users_per_batch": 100, "min_users_per_arm": 50, "min_requests": 20}}


def test_oracle_beats_random_on_a_spec_and_the_stage_writes_its_files(tmp_path: Path) -> None:
    cfg = load_config("tiny", overrides=SMALL)
    ds, _ = data.Dataset.from_spec("synthetic:300", cfg)
    out = tmp_path / "ab"
    m = abtest(cfg, "random", "oracle", ds, out, users=2000, split="all", in_process=True, progress=False,
               context={"data": "synthetic:300"})
    assert m["decision"] == "promote" and m["challenger"] == "challenger", m["reasons"]
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(m))
    decision = json.loads((out / "decision.json").read_text())
    assert decision["decision"] == "promote" and decision["context"]["data"] == "synthetic:300"
    assert decision["context"]["champion"] == "random" and sum(m["users"].values()) <= 2000
    assert "served" in decision["context"] and (out / "report.md").stat().st_size > 0


def test_the_pipeline_input_is_the_prepared_test_split(tmp_path: Path) -> None:
    cfg = load_config("tiny", overrides=SMALL)
    data.prepare(cfg, "synthetic:300", tmp_path / "dataset")
    test_queries = {p.query_id for p in data.open_dataset(tmp_path / "dataset").part("test")}
    # The users search the held-out test queries only (the default split), nothing the student trained on.
    assert {q.query_id for q in search_queries(tmp_path / "dataset")} <= test_queries
    m = abtest(cfg, "worst", "oracle", tmp_path / "dataset", tmp_path / "ab", users=300, in_process=True,
               progress=False)
    assert m["decision"] in ("promote", "continue") and sum(m["users"].values()) > 0
    assert json.loads((tmp_path / "ab" / "metrics.json").read_text())["decision"] == m["decision"]


def test_reference_rankers_need_in_process(tmp_path: Path) -> None:
    cfg = load_config("tiny")
    with pytest.raises(ValueError, match="only with --in-process"):
        abtest(cfg, "random", "oracle", tmp_path, tmp_path / "ab", users=10)
