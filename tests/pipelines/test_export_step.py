"""The pipeline's export step applies every ``export.*`` setting (it once dropped them all)."""

from __future__ import annotations

import json
from pathlib import Path

from distillery.config import load_config
from distillery.data.synthetic import generate
from distillery.pipeline.serve_steps import export_repository
from distillery.pipeline.steps import config_to_json
from tests.students import make_student


def test_export_step_serves_int8_and_passes_every_export_setting(tmp_path: Path) -> None:
    pairs = generate(40, seed=3)[:24]
    student = make_student(tmp_path / "student", 1, [p.query for p in pairs], [p.title for p in pairs])
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "test.jsonl").write_text("".join(json.dumps(p.to_json()) + "\n" for p in pairs), encoding="utf-8")
    # The tiny student's logits are nearly tied, so its int8 labels are gated on |Δlogit| only (as in
    # tests/serving); the batching fields are off their defaults so that the config shows they arrived.
    cfg = load_config(profile="tiny", overrides={"export": {
        "int8": True, "int8_min_agreement": 0.0, "int8_max_abs_diff": 0.5, "max_batch": 16,
        "queue_delay_us": 250, "threads": 2, "micro_batch": 4, "direct": False}})
    repo = tmp_path / "repo"
    metrics = export_repository(student, dataset, config_to_json(cfg), repo, tmp_path / "out", version=1)

    assert metrics["precision"] == "int8" and metrics["requested_precision"] == "int8" and not metrics["refused"]
    runtime = json.loads((repo / "student" / "1" / "runtime.json").read_text(encoding="utf-8"))
    assert runtime["precision"] == "int8"
    config = (repo / "student" / "config.pbtxt").read_text(encoding="utf-8")
    assert "max_batch_size: 16" in config and "max_queue_delay_microseconds: 250" in config
    assert not (repo / "relevance_direct").exists()  # export.direct=false reached the repository
    assert metrics["hardware"]["isa"] and "int8" in (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
