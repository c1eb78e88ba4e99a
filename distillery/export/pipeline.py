"""The export flow: ONNX (plain and fused) → parity gate → optional int8 → what the repository serves.

    from distillery.export.pipeline import export_student
    result = export_student("runs/ft/model", "/tmp/export", queries, items, int8=True)
    result.served            # the graph to serve (fused fp32 unless int8 was asked for)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distillery.export.onnx_export import export_onnx, optimize_bert
from distillery.export.parity import ParityReport, compare, gate, reference_and_onnx
from distillery.export.quantize import quantize_int8


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
        return self.fused or self.onnx

    def to_dict(self) -> dict[str, Any]:
        return {"onnx": str(self.onnx), "fused": str(self.fused) if self.fused else None,
                "int8": str(self.int8) if self.int8 else None, "precision": self.precision,
                "served": str(self.served), "parity": [r.to_dict() for r in self.reports]}


def _bert_shape(model_dir: Path) -> tuple[int, int]:
    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    return int(cfg["num_attention_heads"]), int(cfg["hidden_size"])


def export_student(model_dir: str | Path, work_dir: str | Path, queries: list[str], items: list[str],
                   int8: bool = False, fuse: bool = True, tolerance: float = 1e-4, min_agreement: float = 0.999,
                   batch_size: int = 32) -> ExportResult:
    """Export, fuse, optionally quantise, and gate every fp32 graph on (queries, items).

    Raises :class:`~distillery.export.parity.ParityError` when an fp32 graph misses the bounds; the
    int8 graph's agreement is measured and reported only.
    """
    model_dir, work = Path(model_dir), Path(work_dir)
    if not queries:
        raise ValueError("export_student: the parity set is empty (give --data with at least one pair)")
    work.mkdir(parents=True, exist_ok=True)
    result = ExportResult(onnx=export_onnx(model_dir, work / "student.onnx"), precision="int8" if int8 else "fp32")
    graphs = {"onnx fp32": result.onnx}
    if fuse:
        heads, hidden = _bert_shape(model_dir)
        result.fused = optimize_bert(result.onnx, work / "student.fused.onnx", heads, hidden)
        graphs["onnx fp32 fused"] = result.fused
    if int8:
        result.int8 = quantize_int8(result.fused or result.onnx, work / "student.int8.onnx")
        graphs["onnx int8"] = result.int8
    ref, outs = reference_and_onnx(model_dir, graphs, queries, items, batch_size)
    for name, got in outs.items():
        fp32 = "int8" not in name
        report = compare(name, ref, got, tolerance if fp32 else None, min_agreement if fp32 else None)
        result.reports.append(gate(report) if fp32 else report)
    return result
