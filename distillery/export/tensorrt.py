"""TensorRT plan building: fp16, one optimisation profile over batch × sequence length.

Runs where TensorRT is installed (NVIDIA's TensorRT or Triton container on a GPU node), e.g.

    python -m distillery.export.tensorrt student.onnx model.plan --batch 1,8,64 --seq 16,64,128

or, equivalently, the command :func:`trtexec_command` prints (``--print-trtexec``).  TensorRT cannot be
installed on CPU-only machines; :func:`build_engine` then fails with :class:`TensorRTUnavailable`.

A plan only loads in the TensorRT version that built it, so the pipeline builds it inside the image that serves
it (:data:`TRITON_IMAGE`, whose ``trtexec`` is the TensorRT of its own Triton backend): see
:mod:`distillery.export.plan`.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

from distillery.serving.preprocess import INPUT_NAMES

TRITON_RELEASE = "25.01"
"""NVIDIA's Triton container release: the one place its tag is named (``images/serving/Dockerfile`` starts FROM
:data:`TRITON_IMAGE`, a test holds them equal).  Release 25.01 is Triton 2.54 with TensorRT 10.8 (10.8.0.43, as
in ``nvcr.io/nvidia/tensorrt:25.01-py3``; NVIDIA's release notes and frameworks support matrix): TensorRT ≥ 10,
so the plan keeps the tokenizer's INT64 inputs."""
TRITON_IMAGE = f"nvcr.io/nvidia/tritonserver:{TRITON_RELEASE}-py3"
"""Triton with the python, onnxruntime and TensorRT backends, and TensorRT's ``trtexec``."""
TRTEXEC = "/usr/src/tensorrt/bin/trtexec"
"""Where NVIDIA's Triton and TensorRT images keep ``trtexec`` (not on ``PATH`` there)."""


class TensorRTUnavailable(RuntimeError):
    """TensorRT's Python package is not importable here."""


@dataclass(frozen=True)
class TrtProfile:
    """One optimisation profile: min ≤ opt ≤ max for the batch and the sequence axes."""

    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 64
    min_seq: int = 8
    opt_seq: int = 64
    max_seq: int = 128

    def __post_init__(self) -> None:
        for axis in ("batch", "seq"):
            lo, opt, hi = (getattr(self, f"{k}_{axis}") for k in ("min", "opt", "max"))
            if not 1 <= lo <= opt <= hi:
                raise ValueError(f"TrtProfile {axis}: need 1 ≤ min ≤ opt ≤ max, got {lo}, {opt}, {hi}")

    def shapes(self) -> dict[str, tuple[tuple[int, int], tuple[int, int], tuple[int, int]]]:
        """(min, opt, max) shape of every input."""
        s = ((self.min_batch, self.min_seq), (self.opt_batch, self.opt_seq), (self.max_batch, self.max_seq))
        return {name: s for name in INPUT_NAMES}

    @classmethod
    def parse(cls, batch: str, seq: str) -> TrtProfile:
        """From ``"1,8,64"`` and ``"8,64,128"``."""
        b = [int(x) for x in batch.split(",")]
        s = [int(x) for x in seq.split(",")]
        if len(b) != 3 or len(s) != 3:
            raise ValueError(f"--batch {batch!r} / --seq {seq!r}: expected MIN,OPT,MAX")
        return cls(b[0], b[1], b[2], s[0], s[1], s[2])


def trtexec_command(onnx: str | Path, plan: str | Path, profile: TrtProfile, fp16: bool = True,
                    workspace_mb: int = 4096, trtexec: str = "trtexec") -> list[str]:
    """The ``trtexec`` invocation that builds the same engine as :func:`build_engine`."""
    def dims(i: int) -> str:
        return ",".join(f"{n}:{s[i][0]}x{s[i][1]}" for n, s in profile.shapes().items())

    cmd = [trtexec, f"--onnx={onnx}", f"--saveEngine={plan}", f"--minShapes={dims(0)}",
           f"--optShapes={dims(1)}", f"--maxShapes={dims(2)}", f"--memPoolSize=workspace:{workspace_mb}M"]
    return [*cmd, "--fp16"] if fp16 else cmd


def require_tensorrt() -> object:
    if importlib.util.find_spec("tensorrt") is None:
        raise TensorRTUnavailable(
            "TensorRT is not installed here: build the plan on a GPU node in NVIDIA's TensorRT or Triton "
            "container (nvcr.io/nvidia/tensorrt), with this module or the trtexec command it prints "
            "(--print-trtexec); TensorRT's PyPI wheels only download from NVIDIA's own index")
    import tensorrt

    return tensorrt


def build_engine(onnx: str | Path, plan: str | Path, profile: TrtProfile, fp16: bool = True,
                 workspace_mb: int = 4096) -> Path:
    """Parse the ONNX, add the profile, build and serialise the engine to ``plan``."""
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)  # type: ignore[attr-defined]
    builder = trt.Builder(logger)  # type: ignore[attr-defined]
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)  # type: ignore[attr-defined]
    if not parser.parse(Path(onnx).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{onnx}: TensorRT cannot parse the ONNX graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)  # type: ignore[attr-defined]
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)  # type: ignore[attr-defined]
    opt = builder.create_optimization_profile()
    for name, (lo, mid, hi) in profile.shapes().items():
        opt.set_shape(name, lo, mid, hi)
    config.add_optimization_profile(opt)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise RuntimeError(f"{onnx}: TensorRT failed to build an engine (see the log above)")
    Path(plan).parent.mkdir(parents=True, exist_ok=True)
    Path(plan).write_bytes(bytes(engine))
    return Path(plan)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Build a TensorRT plan from the exported student ONNX.")
    p.add_argument("onnx")
    p.add_argument("plan")
    p.add_argument("--batch", default="1,8,64", help="MIN,OPT,MAX batch")
    p.add_argument("--seq", default="1,64,128", help="MIN,OPT,MAX sequence length (export.trt_seq)")
    p.add_argument("--no-fp16", action="store_true")
    p.add_argument("--print-trtexec", action="store_true", help="print the equivalent trtexec command and exit")
    args = p.parse_args(argv)
    profile = TrtProfile.parse(args.batch, args.seq)
    if args.print_trtexec:
        print(" ".join(trtexec_command(args.onnx, args.plan, profile, fp16=not args.no_fp16)))
        return 0
    try:
        print(build_engine(args.onnx, args.plan, profile, fp16=not args.no_fp16))
    except TensorRTUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
