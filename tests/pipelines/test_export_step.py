"""The export stage (the pipeline's export step and ``distillery export``) applies every ``export.*`` setting
(the pipeline once dropped them all)."""

from __future__ import annotations

import json
from pathlib import Path

from distillery.config import load_config
from distillery.data.synthetic import generate
from distillery.stages._io import SPLIT_FILES, config_from_json, config_to_json
from distillery.stages.export import export
from tests.students import make_student


def test_export_step_serves_int8_and_passes_every_export_setting(tmp_path: Path) -> None:
    pairs = generate(40, seed=3)[:24]
    student = make_student(tmp_path / "student", 1, [p.query for p in pairs], [p.title for p in pairs])
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    for name in SPLIT_FILES:  # a prepared dataset directory; the parity gate reads only its test split
        rows = pairs if name == "test" else []
        (dataset / f"{name}.jsonl").write_text("".join(json.dumps(p.to_json()) + "\n" for p in rows),
                                               encoding="utf-8")
    # The tiny student's logits are nearly tied, so its int8 labels are gated on |Δlogit| only (as in
    # tests/serving); the batching fields are off their defaults so that the config shows they arrived.
    cfg = load_config(profile="tiny", overrides={"export": {
        "int8": True, "int8_min_agreement": 0.0, "int8_max_abs_diff": 0.5, "max_batch": 16,
        "queue_delay_us": 250, "threads": 2, "micro_batch": 4, "direct": False, "instances": 2, "pad_to": 32,
        "variants": "python,tensorrt", "gpu_instances": 3, "trt_batch": "1,4,16", "trt_seq": "8,32,64"}})
    repo = tmp_path / "repo"
    # The config travels as JSON between pipeline steps, as the component passes it.
    metrics = export(config_from_json(config_to_json(cfg)), student, dataset, repo, tmp_path / "out")

    assert metrics["precision"] == "int8" and metrics["requested_precision"] == "int8" and not metrics["refused"]
    runtime = json.loads((repo / "student" / "1" / "runtime.json").read_text(encoding="utf-8"))
    assert runtime["precision"] == "int8"
    config = (repo / "student" / "config.pbtxt").read_text(encoding="utf-8")
    assert "max_batch_size: 16" in config and "max_queue_delay_microseconds: 250" in config
    assert "count: 2 kind: KIND_CPU" in config and '"intra_op_threads" value: { string_value: "2" }' in config
    assert '"micro_batch" value: { string_value: "4" }' in config
    assert '"pad_to_length" value: { string_value: "32" }' in (repo / "tokenizer" / "config.pbtxt").read_text()
    trt = (repo / "student_trt" / "config.pbtxt").read_text(encoding="utf-8")
    assert "count: 3 kind: KIND_GPU" in trt and "batch 1/4/16, sequence 8/32/64" in trt
    assert metrics["parity_pairs"] == len(pairs) and json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert not (repo / "relevance_direct").exists()  # export.direct=false reached the repository
    assert metrics["hardware"]["isa"] and "int8" in (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
