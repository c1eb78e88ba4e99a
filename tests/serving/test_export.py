"""ONNX export, the parity gate, int8, and the repository layout (no server)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from distillery import hardware
from distillery.config import ExportConfig
from distillery.export.parity import ParityError, compare, gate
from distillery.export.repository import MANIFEST, render, write_version
from distillery.serving.runtime import OnnxStudent, merge_requests, split_rows
from tests.serving.conftest import ITEMS, QUERIES, reference_probs, tiny_bounds


def test_manifest_records_passing_gate_and_int8_agreement(repo: Path):
    manifest = json.loads((repo / MANIFEST).read_text())
    assert manifest["champion"] == 1 and set(manifest["versions"]) == {"1", "2", "3"}
    v1 = {r["name"]: r for r in manifest["versions"]["1"]["parity"]}
    assert v1["onnx fp32"]["passed"] and v1["onnx fp32"]["max_abs_diff"] <= 1e-4
    assert v1["onnx fp32 fused"]["agreement"] >= 0.999
    v2 = {r["name"]: r for r in manifest["versions"]["2"]["parity"]}
    assert v2["onnx int8"]["tolerance"] == 0.5 and v2["onnx int8"]["passed"]  # gated at its own bounds
    assert v2["onnx int8"]["ran"] == "int8"
    entry = manifest["versions"]["2"]
    assert entry["precision"] == entry["requested_precision"] == "int8" and entry["refused"] == []
    assert entry["runtime"]["quantization"]["reduce_range"] is True
    assert manifest["versions"]["1"]["hardware"]["model"] == hardware.cpu().model
    report = (repo / "export-report-v1.md").read_text()
    assert "| onnx fp32 | fp32 | 40 |" in report and "champion" in report and (repo / "export-report-v1.png").exists()
    assert f"gate measured on: {hardware.cpu().model}" in report
    report2 = (repo / "export-report-v2.md").read_text()
    assert "challenger (`relevance_v2`)" in report2 and "reduce_range=True" in report2


def test_bf16_version_runs_on_openvino(repo: Path, students):
    """export.bf16: the plain graph, served by OpenVINO at the precision its gate measured."""
    import openvino as ov

    from distillery.serving.runtime import OpenVinoStudent, load_student, read_runtime

    native = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    ran = "bf16" if native else "fp32"  # only what the gate measured is served: fp32 where bf16 is not native
    v3 = json.loads((repo / MANIFEST).read_text())["versions"]["3"]
    parity = {r["name"]: r for r in v3["parity"]}
    assert v3["precision"] == ran and v3["runtime"] == {"engine": "openvino", "precision": ran}
    assert v3["requested_precision"] == "bf16" and v3["refused"] == []
    assert parity["openvino bf16"]["tolerance"] == 0.1 and parity["openvino bf16"]["passed"]
    assert parity["openvino bf16"]["ran"] == ran
    assert parity["onnx fp32"]["passed"]  # the fp32 graph OpenVINO reads is gated as always
    for model in ("student", "relevance_direct"):
        assert read_runtime(repo / model / "3") == {"engine": "openvino", "precision": ran}
        assert read_runtime(repo / model / "1") == {"engine": "onnxruntime", "precision": "fp32"}
    student = load_student(repo / "student" / "3" / "model.onnx", micro_batch=4)
    assert isinstance(student, OpenVinoStudent)
    assert student.precision == ran  # what OpenVINO really runs
    from distillery.serving.preprocess import TextEncoder

    probs = student.run(TextEncoder.from_dir(students[0]).encode(QUERIES, ITEMS))["probs"]
    np.testing.assert_allclose(probs, reference_probs(students[0], QUERIES, ITEMS), atol=0.02)


def test_runtime_spec_errors_name_the_file(tmp_path: Path):
    from distillery.serving.runtime import RUNTIME_FILE, read_runtime

    (tmp_path / RUNTIME_FILE).write_text('{"engine": "openvino", "precision": "int8"}')
    with pytest.raises(ValueError, match=r"runtime.json: openvino serves precision \('fp32', 'bf16'\), not 'int8'"):
        read_runtime(tmp_path)
    (tmp_path / RUNTIME_FILE).write_text('{"engine": "tvm"}')
    with pytest.raises(ValueError, match="engine 'tvm' is not one of"):
        read_runtime(tmp_path)


def test_gate_fails_with_figures():
    ref = np.array([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]], dtype=np.float32)
    ok = compare("onnx fp32", ref, ref + 5e-5)
    assert gate(ok).passed
    bad = compare("onnx fp32", ref, ref + np.array([[0.0, 0.0, 0.0], [0.0, -3.0, 0.0]], dtype=np.float32))
    assert bad.agreement == 0.5
    with pytest.raises(ParityError, match=r"max \|Δlogit\| 3.00e\+00, label agreement 50.00%"):
        gate(bad)
    with pytest.raises(ParityError, match="output shape"):
        compare("onnx fp32", ref, ref[:, :2])


def test_dynamic_axes_and_request_merging(repo: Path, students):
    """One graph serves any batch and length; merged padded requests give each request's own answer."""
    from distillery.serving.preprocess import TextEncoder

    student = OnnxStudent(repo / "student" / "1" / "model.onnx")
    enc = TextEncoder.from_dir(students[0])
    a, b = enc.encode(QUERIES[:1], ITEMS[:1]), enc.encode(QUERIES[1:], ITEMS[1:])
    assert a["input_ids"].shape[1] < b["input_ids"].shape[1]
    merged, counts = merge_requests([a, b])
    split = split_rows(student.run(merged), counts)
    for alone, together in zip((student.run(a), student.run(b)), split, strict=True):
        np.testing.assert_allclose(together["probs"], alone["probs"], atol=1e-5)
        np.testing.assert_allclose(together["probs"].sum(1), 1.0, atol=1e-5)


def test_length_groups_give_the_one_call_answer(repo: Path, students):
    """Length-sorted micro-batches, each trimmed to its longest row, answer like one padded call, in order."""
    from distillery.serving.preprocess import TextEncoder
    from distillery.serving.runtime import length_groups

    mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1], [1, 1, 0, 0]])
    assert [g.tolist() for g in length_groups(mask, 2)] == [[1, 3], [0, 2]]
    assert [g.tolist() for g in length_groups(mask, 0)] == [[0, 1, 2, 3]]
    onnx = repo / "student" / "1" / "model.onnx"
    feeds = TextEncoder.from_dir(students[0]).encode(QUERIES * 3, ITEMS[::-1] * 3)
    whole = OnnxStudent(onnx).run(feeds)
    grouped = OnnxStudent(onnx, micro_batch=4).run(feeds)
    for name in ("logits", "probs"):
        np.testing.assert_allclose(grouped[name], whole[name], atol=1e-5)


def test_text_scorer_fails_only_the_bad_request(repo: Path, students):
    from distillery.serving.scorer import TextScorer

    scorer = TextScorer.from_dir(repo / "relevance_direct" / "1", micro_batch=2)
    good = (np.array([q.encode() for q in QUERIES], dtype=object), np.array([t.encode() for t in ITEMS], dtype=object))
    bad = (np.array([b"a", b"b"], dtype=object), np.array([b"c"], dtype=object))
    first, second, third = scorer.score_requests([good, bad, good])
    assert isinstance(second, ValueError) and "QUERY has 2 rows but ITEM has 1" in str(second)
    assert isinstance(first, dict) and isinstance(third, dict)
    np.testing.assert_allclose(first["PROBS"], reference_probs(students[0], QUERIES, ITEMS), atol=1e-5)
    np.testing.assert_allclose(third["LOGITS"], first["LOGITS"], atol=1e-6)


def test_repository_layout_and_pins(repo: Path):
    for path in ("tokenizer/1/model.py", "tokenizer/2/student/tokenizer.json", "tokenizer/1/student/distillery.json",
                 "student/1/model.onnx", "student/2/model.py", "relevance/1", "relevance_v1/1", "relevance_v2/1",
                 "relevance_direct/1/model.onnx", "relevance_direct/2/model.py",
                 "relevance_direct/2/student/tokenizer.json"):
        assert (repo / path).exists(), path
    champion = (repo / "relevance" / "config.pbtxt").read_text()
    assert 'platform: "ensemble"' in champion and champion.count("model_version: 1") == 2
    assert (repo / "relevance_v2" / "config.pbtxt").read_text().count("model_version: 2") == 2
    student_cfg = (repo / "student" / "config.pbtxt").read_text()
    assert "version_policy: { all {} }" in student_cfg and "max_batch_size: 16" in student_cfg
    assert "dims: [ 3 ]" in student_cfg and "dynamic_batching" in student_cfg


def test_cluster_variants_and_label_set_guard(repo: Path, students, tmp_path: Path):
    onnx = repo / "student" / "1" / "model.onnx"
    opts = ExportConfig(variants=["python", "onnxruntime", "tensorrt"], serve_with="tensorrt")
    # student_trt takes the plain graph (standard ONNX ops): version 3 (bf16, OpenVINO) serves it
    write_version(students[0], tmp_path, 3, onnx, opts, graphs={"tensorrt": repo / "student" / "3" / "model.onnx"})
    trt = (tmp_path / "student_trt" / "config.pbtxt").read_text()
    assert 'platform: "tensorrt_plan"' in trt and "KIND_GPU" in trt and "preferred_batch_size: [ 8 ]" in trt
    assert 'platform: "onnxruntime_onnx"' in (tmp_path / "student_onnx" / "config.pbtxt").read_text()
    assert 'model_name: "student_trt"' in (tmp_path / "relevance" / "config.pbtxt").read_text()
    meta = json.loads((students[1] / "distillery.json").read_text())
    other = tmp_path / "other"
    other.mkdir()
    for f in students[1].iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    (other / "distillery.json").write_text(json.dumps({**meta, "classes": ["A", "B"]}))
    with pytest.raises(ValueError, match="must share the label set"):
        write_version(other, tmp_path, 4, onnx, opts)
    with pytest.raises(ValueError, match=r"export\.serve_with"):
        ExportConfig(variants=["python"], serve_with="tensorrt")
    with pytest.raises(ValueError, match=r"export.trt_batch=\[1, 8, 32\]: its MAX is below export.max_batch"):
        ExportConfig(variants=["python", "tensorrt"], serve_with="tensorrt", trt_batch=[1, 8, 32])


def test_render_names_missing_field(tmp_path: Path):
    tpl = tmp_path / "config.pbtxt"
    tpl.write_text("max_batch_size: ${max_batch}\n")
    with pytest.raises(ValueError, match=r"no value for \$\{max_batch\}"):
        render(tpl)


def test_repository_to_s3(students, tmp_path: Path, s3_env: str):
    """build_repository writes an s3:// URI through distillery.storage, and extends it on the next version."""
    from distillery import storage
    from distillery.export.repository import build_repository

    storage.client().create_bucket(Bucket="models")
    build_repository(students[0], "s3://models/relevance", 1, queries=QUERIES, items=ITEMS)
    local = storage.fetch("s3://models/relevance", tmp_path / "cache")
    assert (Path(local) / "student" / "1" / "model.onnx").exists()
    assert json.loads((Path(local) / MANIFEST).read_text())["champion"] == 1


def _int8_weights(path: Path) -> list[np.ndarray]:
    import onnx
    from onnx import numpy_helper

    return [numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer
            if t.data_type == onnx.TensorProto.INT8]


def test_int8_uses_reduced_range_and_agrees_with_fp32(repo: Path, students):
    """7-bit weights: u8×s8 pair sums fit int16 (2 × 255 × 64 < 32 767), so CPUs without VNNI do not saturate."""
    from distillery.export.quantize import SETTINGS
    from distillery.serving.preprocess import TextEncoder
    from distillery.serving.runtime import load_student

    int8 = repo / "student" / "2" / "model.onnx"
    weights = _int8_weights(int8)
    assert SETTINGS["reduce_range"] is True and len(weights) >= 8  # every MatMul/Gemm of the tiny BERT
    assert all(w.min() >= -64 and w.max() <= 64 for w in weights), [(w.min(), w.max()) for w in weights]
    assert max(int(np.abs(w).max()) for w in weights) == 64  # the 7-bit range is used, not a smaller one
    student = load_student(int8)
    assert student.precision == "int8"
    probs = student.run(TextEncoder.from_dir(students[1]).encode(QUERIES, ITEMS))["probs"]
    ref = reference_probs(students[1], QUERIES, ITEMS)
    # 7-bit weights: 0.05–0.06 measured on these near-tied random-init logits; a saturated copy is off by 0.26.
    np.testing.assert_allclose(probs, ref, atol=0.08)


def _corrupt_scales(path: Path, factor: float) -> None:
    """Scale every int8 weight's dequantisation scale: the wrong-by-a-large-factor products of a saturating kernel."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    for t in model.graph.initializer:
        if t.name.endswith("_scale"):  # dynamic quantisation: only the weights' scales are initializers
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * np.float32(factor), t.name))
    onnx.save(model, str(path))


def test_gate_refuses_a_wrong_int8_graph(students, tmp_path: Path, monkeypatch):
    """An int8 graph far from fp32 is not served: the version serves fused fp32 and the report says why."""
    import distillery.export.pipeline as pipeline
    from distillery.export.repository import build_repository
    from distillery.serving.runtime import read_runtime

    real = pipeline.quantize_int8

    def corrupted(onnx_in: Path, onnx_out: Path) -> Path:
        out = real(onnx_in, onnx_out)
        _corrupt_scales(out, 6.0)
        return out

    monkeypatch.setattr(pipeline, "quantize_int8", corrupted)
    out = tmp_path / "repo"
    manifest = build_repository(students[1], out, 1, ExportConfig(int8=True), queries=QUERIES, items=ITEMS,
                                bounds=tiny_bounds(), work_dir=tmp_path / "onnx")
    entry = manifest["versions"]["1"]
    assert entry["requested_precision"] == "int8" and entry["precision"] == "fp32"
    assert entry["runtime"] == {"engine": "onnxruntime", "precision": "fp32"}
    (refused,) = entry["refused"]
    assert refused["precision"] == "int8" and not refused["parity"]["passed"]
    assert refused["parity"]["max_abs_diff"] > 0.5, refused
    assert "max |Δlogit|" in refused["reason"] and "> 5.00e-01" in refused["reason"]
    for model in ("student", "relevance_direct"):  # no int8 graph anywhere in the repository
        assert read_runtime(out / model / "1")["precision"] == "fp32"
        assert _int8_weights(out / model / "1" / "model.onnx") == []
    report = (out / "export-report-v1.md").read_text()
    assert "**int8 refused**" in report and "serves fp32 instead" in report and refused["reason"] in report
    assert (tmp_path / "onnx" / "student.int8.onnx").exists()  # kept for inspection, not served
    with pytest.raises(ParityError, match=r"int8 refused by the parity gate.*require_precision"):
        build_repository(students[1], out, 2, ExportConfig(int8=True, require_precision=True), queries=QUERIES,
                         items=ITEMS, bounds=tiny_bounds())
    assert "2" not in json.loads((out / MANIFEST).read_text())["versions"]
    assert not (out / "student" / "2").exists()


def test_full_range_int8_refused_without_vnni(tmp_path: Path):
    """An int8 graph with full-range weights (an older export) does not load where u8×s8 saturates."""
    from distillery.hardware import CpuInfo
    from distillery.serving.runtime import check_int8_safe, runs_at

    avx2 = CpuInfo("AMD EPYC", 2, ("avx2", "fma"))
    vnni = CpuInfo("AMD EPYC", 2, ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"))
    old = {"engine": "onnxruntime", "precision": "int8"}
    with pytest.raises(ValueError, match=r"full-range weights .* without VNNI .*AMD EPYC"):
        check_int8_safe(old, "v2/runtime.json", avx2)
    check_int8_safe(old, "v2/runtime.json", vnni)
    check_int8_safe({**old, "quantization": {"reduce_range": True}}, "v2/runtime.json", avx2)
    check_int8_safe({"engine": "onnxruntime", "precision": "fp32"}, "v1/runtime.json", avx2)
    ov = {"engine": "openvino", "precision": "bf16"}
    assert runs_at(ov, avx2) == "fp32" and runs_at(ov, vnni) == "bf16" and runs_at(old, avx2) == "int8"


def test_export_bounds_are_validated():
    from distillery.config import ConfigError
    from distillery.export.pipeline import GateBounds

    for field, value in (("int8_min_agreement", 1.5), ("bf16_min_agreement", -0.1), ("int8_max_abs_diff", 0.0),
                         ("bf16_max_abs_diff", -1.0)):
        with pytest.raises(ConfigError, match=f"export.{field}="):
            ExportConfig(**{field: value})
    bounds = GateBounds.from_config(ExportConfig(int8_min_agreement=0.97, bf16_max_abs_diff=None))
    assert bounds.int8.min_agreement == 0.97 and bounds.int8.source == "export.int8_*"
    assert bounds.bf16.max_abs_diff is None and bounds.fp32.max_abs_diff == 1e-4
