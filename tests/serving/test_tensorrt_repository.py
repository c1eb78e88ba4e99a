"""The plain-ONNX graph behind ``student_trt`` and ``student_onnx``, their Triton configs, and the plan step.

TensorRT cannot run here (no GPU, no TensorRT wheel), so the plan step is tested up to ``trtexec`` with a
stand-in named ``fake_trtexec``; the configs are checked against Triton's own ModelConfig protobuf and loaded
by the real ``tritonserver`` of ``nvidia-pytriton``, which parses and validates them before it looks for the
onnxruntime/TensorRT backends that its wheel does not ship.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import onnx
import pytest

from distillery.config import ConfigError, ExportConfig
from distillery.export.onnx_export import NonStandardGraph, check_standard
from distillery.export.plan import build_plans, main, plan_commands
from distillery.export.repository import MANIFEST, build_repository, write_version
from distillery.export.tensorrt import TRITON_IMAGE
from tests.serving.conftest import ITEMS, QUERIES, reference_probs

PLAIN_OPS = {"Add", "And", "Cast", "Concat", "Constant", "ConstantOfShape", "Div", "Equal", "Erf", "Expand",
             "Flatten", "Gather", "Gemm", "GreaterOrEqual", "Identity", "LayerNormalization", "MatMul", "Mul",
             "Range", "Reshape", "Shape", "Slice", "Softmax", "Tanh", "Transpose", "Unsqueeze", "Where"}
"""The operators the tiny BERT student's plain graph holds (torch 2.13's TorchScript exporter, opset 17)."""
FUSED_OPS = {"com.microsoft::Attention", "com.microsoft::BiasGelu", "com.microsoft::EmbedLayerNormalization",
             "com.microsoft::SkipLayerNormalization"}
PROFILE = {"trt_batch": [1, 4, 16], "trt_seq": [1, 32, 64]}


@pytest.fixture(scope="module")
def gpu_repo(students: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Version 1 with all three variants; ``student_onnx`` serves the plain graph (``export.onnx_graph=plain``)."""
    root = tmp_path_factory.mktemp("gpu-repo")
    opts = ExportConfig(variants=["python", "onnxruntime", "tensorrt"], onnx_graph="plain", max_batch=16, **PROFILE)
    build_repository(students[0], root / "repo", 1, opts, queries=QUERIES, items=ITEMS, work_dir=root / "onnx")
    return root / "repo"


def test_tensorrt_graph_is_standard_onnx_with_dynamic_axes(gpu_repo: Path):
    graph = gpu_repo / "student_trt" / "1" / "model.onnx"
    ops = check_standard(graph)  # onnx.checker full check + ai.onnx domain only
    standard = {s.name for s in onnx.defs.get_all_schemas() if s.domain == ""}
    assert ops == PLAIN_OPS and ops <= standard
    model = onnx.load(str(graph))
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    shapes = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*model.graph.input, *model.graph.output]}
    assert shapes == {"input_ids": ["batch", "seq"], "attention_mask": ["batch", "seq"],
                      "token_type_ids": ["batch", "seq"], "logits": ["batch", 3], "probs": ["batch", 3]}
    # the fused graph, which the python student serves, is exactly what TensorRT could not read
    with pytest.raises(NonStandardGraph, match="operators outside the standard ONNX domain") as err:
        check_standard(gpu_repo.parent / "onnx" / "student.fused.onnx")
    assert all(op in str(err.value) for op in FUSED_OPS)


def test_each_variant_serves_its_graph_and_the_plain_one_passes_the_parity_gate(gpu_repo: Path, students):
    entry = json.loads((gpu_repo / MANIFEST).read_text())["versions"]["1"]
    assert entry["graphs"] == {"student": "fused fp32", "student_onnx": "plain fp32", "student_trt": "plain fp32"}
    report = (gpu_repo / "export-report-v1.md").read_text()
    assert "graph per model: `student` fused fp32, `student_onnx` plain fp32, `student_trt` plain fp32" in report
    assert "TensorRT profile (batch × sequence, min/opt/max): 1/4/16 × 1/32/64" in report
    parity = {r["name"]: r for r in entry["parity"]}
    assert parity["onnx fp32"]["passed"] and parity["onnx fp32"]["max_abs_diff"] <= 1e-4  # the plain graph, gated
    plain = (gpu_repo / "student_trt" / "1" / "model.onnx").read_bytes()
    assert (gpu_repo / "student_onnx" / "1" / "model.onnx").read_bytes() == plain
    assert (gpu_repo / "student" / "1" / "model.onnx").read_bytes() != plain  # fused
    # dynamic batch and sequence: one row, then all rows (padded to the longest), against PyTorch
    import onnxruntime as ort

    from distillery.serving.preprocess import TextEncoder

    sess = ort.InferenceSession(str(gpu_repo / "student_trt" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    encoder = TextEncoder.from_dir(students[0])
    for rows in (slice(0, 1), slice(0, len(QUERIES))):
        feeds = encoder.encode(QUERIES[rows], ITEMS[rows])
        probs = sess.run(["probs"], feeds)[0]
        np.testing.assert_allclose(probs, reference_probs(students[0], QUERIES[rows], ITEMS[rows]), atol=1e-5)


def _model_config(path: Path):  # -> model_config_pb2.ModelConfig
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())


def test_configs_match_the_graph_in_triton_model_config_terms(gpu_repo: Path):
    from tritonclient.grpc import model_config_pb2 as mc

    graph = onnx.load(str(gpu_repo / "student_trt" / "1" / "model.onnx"))
    onnx_to_triton = {onnx.TensorProto.INT64: mc.TYPE_INT64, onnx.TensorProto.FLOAT: mc.TYPE_FP32}
    want_in = [(i.name, onnx_to_triton[i.type.tensor_type.elem_type], [-1]) for i in graph.graph.input]
    want_out = [(o.name, onnx_to_triton[o.type.tensor_type.elem_type], [3]) for o in graph.graph.output]
    trt, ort = (_model_config(gpu_repo / m / "config.pbtxt") for m in ("student_trt", "student_onnx"))
    for cfg in (trt, ort):
        # batch axis implicit (max_batch_size > 0): dims are per row, -1 the sequence
        assert [(i.name, i.data_type, list(i.dims)) for i in cfg.input] == want_in
        assert [(o.name, o.data_type, list(o.dims)) for o in cfg.output] == want_out
        assert all(p <= cfg.max_batch_size for p in cfg.dynamic_batching.preferred_batch_size)
    assert trt.platform == "tensorrt_plan" and trt.default_model_filename == "model.plan"
    assert trt.max_batch_size == 16 and list(trt.dynamic_batching.preferred_batch_size) == [4]
    (group,) = trt.instance_group
    assert group.kind == mc.ModelInstanceGroup.KIND_GPU and list(group.profile) == ["0"]
    assert ort.platform == "onnxruntime_onnx" and ort.default_model_filename == "model.onnx"
    assert ort.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU


def _triton_load_reasons(repo: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, str], str]:
    from distillery.serving.server import ServerError, TritonServer, load_failures

    monkeypatch.setenv("DISTILLERY_KEEP_TRITON_LOG", "1")  # read the whole log after the failed start
    server = TritonServer(repo, startup_timeout_s=60)
    with pytest.raises(ServerError):
        server.start()
    log = server.log_text()
    if server.log_path is not None:
        shutil.rmtree(server.log_path.parent, ignore_errors=True)
    return {model: reason for model, _, reason in load_failures(log)}, log


def test_real_triton_parses_and_validates_both_configs(gpu_repo: Path, tmp_path: Path, monkeypatch):
    """Triton reads config.pbtxt and validates it while polling the repository; a model that passes gets as
    far as its backend library, which the PyPI build lacks: that, and only that, must be what stops it."""
    repo = tmp_path / "repo"
    for model in ("student_onnx", "student_trt"):
        shutil.copytree(gpu_repo / model, repo / model)
    reasons, _ = _triton_load_reasons(repo, monkeypatch)
    assert set(reasons) == {"student_onnx", "student_trt"}
    assert "unable to find backend library for backend 'onnxruntime'" in reasons["student_onnx"]
    assert "unable to find backend library for backend 'tensorrt'" in reasons["student_trt"]
    # the same check refuses a config Triton's validator rejects (control: it is not blind)
    cfg = repo / "student_trt" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace("preferred_batch_size: [ 4 ]", "preferred_batch_size: [ 32 ]"))
    reasons, log = _triton_load_reasons(repo, monkeypatch)
    assert "student_trt" not in reasons
    assert "Poll failed for model directory 'student_trt': dynamic batching preferred size must be <= max batch" in log


def test_trtexec_commands_follow_the_profile_of_each_version(gpu_repo: Path):
    (cmd,) = plan_commands(gpu_repo).values()
    trt = gpu_repo / "student_trt" / "1"
    assert cmd == ["trtexec", f"--onnx={trt / 'model.onnx'}", f"--saveEngine={trt / 'model.plan'}",
                   "--minShapes=input_ids:1x1,attention_mask:1x1,token_type_ids:1x1",
                   "--optShapes=input_ids:4x32,attention_mask:4x32,token_type_ids:4x32",
                   "--maxShapes=input_ids:16x64,attention_mask:16x64,token_type_ids:16x64",
                   "--memPoolSize=workspace:4096M", "--fp16"]


FAKE_TRTEXEC = """#!/bin/sh
# fake_trtexec: stands in for TensorRT's trtexec, which cannot run without a GPU; writes the --saveEngine file.
for a in "$@"; do case "$a" in --saveEngine=*) plan="${a#--saveEngine=}";; --onnx=*) graph="${a#--onnx=}";; esac; done
[ -f "$graph" ] || { echo "no such onnx: $graph"; exit 2; }
echo "[I] TensorRT version: 10.8.0"
[ -n "$FAIL" ] && { echo "[E] Error[4]: fake failure"; exit 1; }
printf 'FAKE-PLAN' > "$plan"
"""


def _fake_trtexec(tmp_path: Path) -> str:
    exe = tmp_path / "fake_trtexec"
    exe.write_text(FAKE_TRTEXEC)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(exe)


def test_plan_step_writes_model_plan_into_a_copy(gpu_repo: Path, tmp_path: Path, monkeypatch, capsys):
    fake = _fake_trtexec(tmp_path)
    out = tmp_path / "with-plans"
    assert build_plans(gpu_repo, out, trtexec=fake) == ["1"]
    assert (out / "student_trt" / "1" / "model.plan").read_bytes() == b"FAKE-PLAN"
    assert not (gpu_repo / "student_trt" / "1" / "model.plan").exists()  # the input artifact is left as it was
    built = json.loads((out / MANIFEST).read_text())["versions"]["1"]["tensorrt"]["built"]
    assert built["tensorrt"] == "10.8.0" and built["command"][0] == fake
    assert build_plans(out, trtexec=fake) == []  # present plans are kept
    monkeypatch.setenv("FAIL", "1")
    with pytest.raises(RuntimeError, match=r"version 1: trtexec failed \(exit 1\)[\s\S]*fake failure"):
        build_plans(out, trtexec=fake, force=True)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    if not os.path.exists("/usr/src/tensorrt/bin/trtexec"):
        assert main(["--repo", str(gpu_repo)]) == 3
        assert "no trtexec here" in capsys.readouterr().err
        # --print on a machine without TensorRT prints the serving image's trtexec, as the README shows
        assert main(["--repo", str(gpu_repo), "--print", "--force"]) == 0
        assert "\n/usr/src/tensorrt/bin/trtexec --onnx=" in capsys.readouterr().out
    # with trtexec on PATH, the printed command is the one the step would run
    monkeypatch.setenv("PATH", str(tmp_path))
    (tmp_path / "trtexec").symlink_to(fake)
    assert main(["--repo", str(gpu_repo), "--print", "--force"]) == 0
    assert f"\n{tmp_path / 'trtexec'} --onnx=" in capsys.readouterr().out


def test_bad_tensorrt_settings_fail_with_the_field(gpu_repo: Path, students, tmp_path: Path):
    with pytest.raises(ConfigError, match=r"export.onnx_graph"):
        ExportConfig(onnx_graph="optimised")
    with pytest.raises(ConfigError, match=r"export\.onnx_graph=fused but export\.fuse=false"):
        ExportConfig(variants=["python", "onnxruntime"], fuse=False)
    with pytest.raises(ConfigError, match=r"export.trt_seq=\[8, 64, 128\]: its MIN is above the shortest"):
        ExportConfig(variants=["python", "tensorrt"], trt_seq=[8, 64, 128])
    assert ExportConfig(variants=["python", "tensorrt"], trt_seq=[8, 64, 128], pad_to=8).pad_to == 8
    plain = gpu_repo / "student_trt" / "1" / "model.onnx"
    trt_only = ExportConfig(variants=["tensorrt"], serve_with="tensorrt")
    with pytest.raises(ValueError, match=r"export\.trt_seq MAX 32 < 48"):  # the tiny students' max_length is 48
        write_version(students[0], tmp_path / "r1", 1, plain, dataclasses.replace(trt_only, trt_seq=[1, 16, 32]))
    fused = gpu_repo / "student" / "1" / "model.onnx"
    with pytest.raises(NonStandardGraph, match=r"com\.microsoft::Attention"):
        write_version(students[0], tmp_path / "r2", 1, fused, trt_only)
    assert not (tmp_path / "r2").exists()  # nothing written
    write_version(students[0], tmp_path / "r3", 1, plain, ExportConfig())  # python variant only
    with pytest.raises(ValueError, match="no version has the tensorrt variant"):
        plan_commands(tmp_path / "r3")


def test_serving_image_is_built_from_the_one_triton_tag():
    dockerfile = Path(__file__).resolve().parents[2] / "images" / "serving" / "Dockerfile"
    froms = [ln.split()[1] for ln in dockerfile.read_text().splitlines() if ln.startswith("FROM ")]
    assert froms == [TRITON_IMAGE]


def test_plan_step_imports_only_what_the_serving_image_installs():
    """The serving image holds numpy, tokenizers, transformers, onnxruntime, PyYAML and Triton: no torch, onnx,
    matplotlib or kfp, so the plan step must reach none of them."""
    import subprocess
    import sys

    heavy = ("torch", "onnx", "matplotlib", "kfp", "openvino")
    code = f"import sys, distillery.export.plan; print([m for m in {heavy!r} if m in sys.modules])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
