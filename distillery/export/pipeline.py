"""The export flow: ONNX (plain and fused) → parity gate → optional int8 or bf16 → what the repository serves.

    from distillery.export.pipeline import export_student
    result = export_student("runs/ft/model", "/tmp/export", queries, items, int8=True)
    result.served            # the graph to serve (fused fp32 unless int8 or bf16 was asked for)
    result.runtime           # the engine that serves it: onnxruntime, or OpenVINO for bf16
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distillery.export.onnx_export import export_onnx, optimize_bert
from distillery.export.parity import ParityReport, compare, gate, reference_and_onnx
from distillery.export.quantize import quantize_int8
from distillery.serving.runtime import GraphStudent, OpenVinoStudent

LOW_PRECISION = ("onnx int8", "openvino bf16")
"""Parity rows that are reported, not gated at the fp32 bounds."""


@dataclass
class ExportResult:
    """The files written and how each graph compares with the PyTorch student."""

    onnx: Path
    fused: Path | None = None
    int8: Path | None = None
    reports: list[ParityReport] = field(default_factory=list)
    precision: str = "fp32"

    @property
    def served(self) -> Path:
        if self.precision == "int8" and self.int8 is not None:
            return self.int8
        if self.precision == "bf16":
            return self.onnx  # OpenVINO reads plain ONNX, not onnxruntime's fused contrib operators
        return self.fused or self.onnx

    @property
    def runtime(self) -> dict[str, str]:
        """``runtime.json`` of the served version: which engine runs :attr:`served`, at what precision."""
        return {"engine": "openvino" if self.precision == "bf16" else "onnxruntime", "precision": self.precision}

    def to_dict(self) -> dict[str, Any]:
        return {"onnx": str(self.onnx), "fused": str(self.fused) if self.fused else None,
                "int8": str(self.int8) if self.int8 else None, "precision": self.precision,
                "served": str(self.served), "runtime": self.runtime, "parity": [r.to_dict() for r in self.reports]}


def _bert_shape(model_dir: Path) -> tuple[int, int]:
    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    return int(cfg["num_attention_heads"]), int(cfg["hidden_size"])


def export_student(model_dir: str | Path, work_dir: str | Path, queries: list[str], items: list[str],
                   int8: bool = False, fuse: bool = True, tolerance: float = 1e-4, min_agreement: float = 0.999,
                   batch_size: int = 32, bf16: bool = False) -> ExportResult:
    """Export, fuse, optionally quantise (int8) or run on OpenVINO in bf16, and gate every fp32 graph.

    Raises :class:`~distillery.export.parity.ParityError` when an fp32 graph misses the bounds; the
    int8 graph's and the bf16 run's agreement is measured and reported only.
    """
    if int8 and bf16:
        raise ValueError("export: int8 and bf16 are alternatives, choose one")
    model_dir, work = Path(model_dir), Path(work_dir)
    if not queries:
        raise ValueError("export_student: the parity set is empty (give --data with at least one pair)")
    work.mkdir(parents=True, exist_ok=True)
    result = ExportResult(onnx=export_onnx(model_dir, work / "student.onnx"),
                          precision="int8" if int8 else "bf16" if bf16 else "fp32")
    graphs: dict[str, Path | GraphStudent] = {"onnx fp32": result.onnx}
    if fuse:
        heads, hidden = _bert_shape(model_dir)
        result.fused = optimize_bert(result.onnx, work / "student.fused.onnx", heads, hidden)
        graphs["onnx fp32 fused"] = result.fused
    if int8:
        result.int8 = quantize_int8(result.fused or result.onnx, work / "student.int8.onnx")
        graphs["onnx int8"] = result.int8
    if bf16:
        graphs["openvino bf16"] = OpenVinoStudent(result.onnx, precision="bf16")
    ref, outs = reference_and_onnx(model_dir, graphs, queries, items, batch_size)
    for name, got in outs.items():
        fp32 = name not in LOW_PRECISION
        report = compare(name, ref, got, tolerance if fp32 else None, min_agreement if fp32 else None)
        result.reports.append(gate(report) if fp32 else report)
    return result
