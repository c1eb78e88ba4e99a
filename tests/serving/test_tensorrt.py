"""The TensorRT build step up to the build itself (TensorRT is not installable here)."""

from __future__ import annotations

import importlib.util

import pytest

from distillery.export.tensorrt import TensorRTUnavailable, TrtProfile, build_engine, main, trtexec_command


def test_profile_shapes_and_validation():
    p = TrtProfile.parse("1,8,32", "16,64,128")
    assert p.shapes()["input_ids"] == ((1, 16), (8, 64), (32, 128))
    assert set(p.shapes()) == {"input_ids", "attention_mask", "token_type_ids"}
    with pytest.raises(ValueError, match="batch: need 1 ≤ min ≤ opt ≤ max"):
        TrtProfile(min_batch=4, opt_batch=2)
    with pytest.raises(ValueError, match="expected MIN,OPT,MAX"):
        TrtProfile.parse("1,8", "8,64,128")


def test_trtexec_command():
    cmd = trtexec_command("m.onnx", "m.plan", TrtProfile(), fp16=True, workspace_mb=2048)
    assert cmd[:3] == ["trtexec", "--onnx=m.onnx", "--saveEngine=m.plan"]
    assert "--minShapes=input_ids:1x8,attention_mask:1x8,token_type_ids:1x8" in cmd
    assert "--maxShapes=input_ids:64x128,attention_mask:64x128,token_type_ids:64x128" in cmd
    assert "--fp16" in cmd and "--memPoolSize=workspace:2048M" in cmd
    assert "--fp16" not in trtexec_command("m.onnx", "m.plan", TrtProfile(), fp16=False)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_clear_error_without_tensorrt(tmp_path, capsys):
    with pytest.raises(TensorRTUnavailable, match="TensorRT is not installed here"):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.plan", TrtProfile())
    assert main([str(tmp_path / "m.onnx"), str(tmp_path / "m.plan")]) == 3
    assert "nvcr.io/nvidia/tensorrt" in capsys.readouterr().err
    assert main(["m.onnx", "m.plan", "--print-trtexec", "--batch", "1,4,16"]) == 0
    assert "--maxShapes=input_ids:16x128" in capsys.readouterr().out
