"""The export flow: ONNX (plain and fused) → parity gate → optional int8 or bf16 → what the repository serves.

    from distillery.export.pipeline import export_student
    result = export_student("runs/ft/model", "/tmp/export", queries, items, int8=True)
    result.served            # the graph to serve (fused fp32 unless int8 or bf16 was asked for and passed)
    result.runtime           # the engine that serves it: onnxruntime, or OpenVINO for bf16
    result.refused           # a lower precision the gate would not serve, with its figures vs its bounds

Every graph that can be served is gated on the parity pairs, on the machine that exports, each against the
bounds of its precision (:class:`GateBounds`, from ``export.*``):

- **fp32** (the plain and the fused onnxruntime graphs): a miss is a hard failure
  (:class:`~distillery.export.parity.ParityError`, nothing is written): the student itself did not export.
- **int8** (onnxruntime's quantised graph) and **bf16** (OpenVINO): a miss *refuses* that precision: the
  version is served from the fused fp32 graph instead (which passed its own gate), and the manifest, the
  report and ``distillery export`` name the refused precision with its figures against its bounds.  A
  student always has a correct fp32 graph by then, so refusing the faster copy never leaves a version
  unservable; ``require_precision=True`` (``export.require_precision``) makes the miss a hard failure
  instead, for a user who would rather have no version than an fp32 one.
- Only what was measured is served: OpenVINO keeps fp32 where the exporting CPU has no native bf16
  (AMX / AVX512-BF16), so such a version is written as OpenVINO **fp32** (what the gate measured), not as
  a bf16 request that another CPU would run unmeasured.  The int8 graph uses 7-bit weights
  (:mod:`distillery.export.quantize`), so every x86 CPU computes the same integers as the one that gated it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distillery import hardware
from distillery.config import ExportConfig
from distillery.export.onnx_export import export_onnx, optimize_bert
from distillery.export.parity import Bound, ParityError, ParityReport, compare, gate, reference_and_onnx, refusal
from distillery.export.quantize import SETTINGS as INT8_SETTINGS
from distillery.export.quantize import quantize_int8
from distillery.serving.runtime import GraphStudent, OpenVinoStudent

LOW_PRECISION = {"onnx int8": "int8", "openvino bf16": "bf16"}
"""Parity rows of the lower precisions → the precision whose bounds gate them (every other row is fp32)."""


@dataclass(frozen=True)
class GateBounds:
    """The bounds of each precision (:meth:`from_config` reads them from ``export.*``)."""

    fp32: Bound
    int8: Bound
    bf16: Bound

    @classmethod
    def from_config(cls, ex: ExportConfig) -> GateBounds:
        return cls(fp32=Bound(ex.parity_min_agreement, ex.parity_tolerance, "export.parity_*"),
                   int8=Bound(ex.int8_min_agreement, ex.int8_max_abs_diff, "export.int8_*"),
                   bf16=Bound(ex.bf16_min_agreement, ex.bf16_max_abs_diff, "export.bf16_*"))

    @classmethod
    def default(cls) -> GateBounds:
        """The ``export.*`` defaults."""
        return cls.from_config(ExportConfig())

    def of(self, precision: str) -> Bound:
        return {"fp32": self.fp32, "int8": self.int8, "bf16": self.bf16}[precision]


@dataclass
class ExportResult:
    """The files written and how each graph compares with the PyTorch student."""

    onnx: Path
    fused: Path | None = None
    int8: Path | None = None
    reports: list[ParityReport] = field(default_factory=list)
    precision: str = "fp32"
    """What the version serves: the requested precision when it passed its gate, else ``fp32``."""
    requested: str = ""
    """The precision asked for (``fp32``, ``int8`` or ``bf16``; empty: as :attr:`precision`)."""
    engine_precision: str = ""
    """bf16 only: what OpenVINO really ran here (``fp32`` on CPUs without native bf16)."""
    refused: list[dict[str, Any]] = field(default_factory=list)
    """Lower precisions that missed their bounds: ``{"precision", "graph", "reason", "parity"}``."""
    hardware: dict[str, Any] = field(default_factory=hardware.describe)
    """The CPU the gate measured on (:func:`distillery.hardware.describe`)."""

    @property
    def served(self) -> Path:
        if self.precision == "int8" and self.int8 is not None:
            return self.int8
        if self.precision == "bf16":
            return self.onnx  # OpenVINO reads plain ONNX, not onnxruntime's fused contrib operators
        return self.fused or self.onnx

    @property
    def runtime(self) -> dict[str, Any]:
        """``runtime.json`` of the served version: which engine runs :attr:`served`, at what precision (the
        precision the gate measured), and the quantiser's settings for int8."""
        if self.precision == "bf16":
            return {"engine": "openvino", "precision": self.engine_precision or "bf16"}
        if self.precision == "int8":
            return {"engine": "onnxruntime", "precision": "int8", "quantization": dict(INT8_SETTINGS)}
        return {"engine": "onnxruntime", "precision": "fp32"}

    def graph_for(self, variant: str, onnx_graph: str = "fused") -> Path:
        """The graph each student variant serves (``export.variants``): ``python`` the gated :attr:`served`
        graph; ``onnxruntime`` the fused one (int8 when int8 is served) or, with ``onnx_graph="plain"``, the
        plain one; ``tensorrt`` always the plain graph, the only one TensorRT's parser reads."""
        if variant == "tensorrt" or (variant == "onnxruntime" and onnx_graph == "plain"):
            return self.onnx
        if variant == "onnxruntime":
            return self.int8 if self.precision == "int8" and self.int8 is not None else self.fused or self.onnx
        return self.served

    def graph_label(self, path: Path) -> str:
        """``plain fp32``, ``fused fp32`` or ``int8``: what a graph file of this export is."""
        return {self.onnx: "plain fp32", self.fused: "fused fp32", self.int8: "int8"}.get(path, str(path))

    @property
    def served_precision(self) -> str:
        """The precision the served version runs at (bf16 asked for on a CPU without it: fp32)."""
        return str(self.runtime["precision"])

    def to_dict(self) -> dict[str, Any]:
        return {"onnx": str(self.onnx), "fused": str(self.fused) if self.fused else None,
                "int8": str(self.int8) if self.int8 else None, "precision": self.precision,
                "requested_precision": self.requested or self.precision, "refused": self.refused,
                "hardware": self.hardware, "served": str(self.served), "runtime": self.runtime,
                "parity": [r.to_dict() for r in self.reports]}


def _bert_shape(model_dir: Path) -> tuple[int, int]:
    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    return int(cfg["num_attention_heads"]), int(cfg["hidden_size"])


def export_student(model_dir: str | Path, work_dir: str | Path, queries: list[str], items: list[str],
                   int8: bool = False, fuse: bool = True, batch_size: int = 32, bf16: bool = False,
                   bounds: GateBounds | None = None, require_precision: bool = False) -> ExportResult:
    """Export, fuse, optionally quantise (int8) or run on OpenVINO in bf16, and gate every graph.

    ``bounds`` defaults to the ``export.*`` defaults.  Raises :class:`~distillery.export.parity.ParityError`
    when an fp32 graph misses its bounds (or, with ``require_precision``, when the requested int8/bf16 graph
    does); a lower precision that misses its bounds is otherwise refused (:attr:`ExportResult.refused`) and
    the fused fp32 graph is served.
    """
    if int8 and bf16:
        raise ValueError("export: int8 and bf16 are alternatives, choose one")
    bounds = bounds or GateBounds.default()
    model_dir, work = Path(model_dir), Path(work_dir)
    if not queries:
        raise ValueError("export_student: the parity set is empty (give --data with at least one pair)")
    work.mkdir(parents=True, exist_ok=True)
    requested = "int8" if int8 else "bf16" if bf16 else "fp32"
    result = ExportResult(onnx=export_onnx(model_dir, work / "student.onnx"), precision=requested, requested=requested)
    graphs: dict[str, Path | GraphStudent] = {"onnx fp32": result.onnx}
    if fuse:
        heads, hidden = _bert_shape(model_dir)
        result.fused = optimize_bert(result.onnx, work / "student.fused.onnx", heads, hidden)
        graphs["onnx fp32 fused"] = result.fused
    if int8:
        result.int8 = quantize_int8(result.fused or result.onnx, work / "student.int8.onnx")
        graphs["onnx int8"] = result.int8
    if bf16:
        ov = OpenVinoStudent(result.onnx, precision="bf16")
        graphs["openvino bf16"] = ov
        result.engine_precision = ov.precision  # fp32 where this CPU has no native bf16
    ref, outs = reference_and_onnx(model_dir, graphs, queries, items, batch_size)
    for name, got in outs.items():
        precision = LOW_PRECISION.get(name, "fp32")
        bound = bounds.of(precision)
        ran = result.engine_precision if name == "openvino bf16" else precision
        report = compare(name, ref, got, bound.max_abs_diff, bound.min_agreement, ran=ran)
        if precision == "fp32":
            result.reports.append(gate(report))
            continue
        result.reports.append(report)
        reason = refusal(report, bound)
        if reason is None:
            continue
        if require_precision:
            raise ParityError(f"{precision} refused by the parity gate — {reason}; "
                              "export.require_precision is set, so no fp32 fallback is written")
        result.refused.append({"precision": precision, "graph": name, "reason": reason, "parity": report.to_dict(),
                               "cpu": hardware.cpu().line()})
        result.precision = "fp32"
    return result
