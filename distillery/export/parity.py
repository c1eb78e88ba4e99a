"""The parity gate: the exported graph must give the PyTorch student's logits on an evaluation set.

fp32 exports must agree within ``max_abs_diff`` ≤ 1e-4 on every logit and pick the same label on at
least 99.9% of pairs, or the export fails.  int8 graphs and OpenVINO's bf16 run are measured the same way
and reported, not gated at the fp32 bound (lower precision moves logits by design).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distillery.serving.runtime import GraphStudent


class ParityError(RuntimeError):
    """The exported model does not reproduce the PyTorch student closely enough."""


@dataclass
class ParityReport:
    """How closely one exported graph follows the PyTorch student."""

    name: str
    n: int
    max_abs_diff: float
    mean_abs_diff: float
    agreement: float
    tolerance: float | None
    min_agreement: float | None

    @property
    def passed(self) -> bool:
        tol_ok = self.tolerance is None or self.max_abs_diff <= self.tolerance
        agree_ok = self.min_agreement is None or self.agreement >= self.min_agreement
        return tol_ok and agree_ok

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def line(self) -> str:
        gate = "not gated" if self.tolerance is None else ("PASS" if self.passed else "FAIL")
        return (f"{self.name}: {self.n} pairs, max |Δlogit| {self.max_abs_diff:.2e}, "
                f"label agreement {100 * self.agreement:.2f}% ({gate})")


def compare(name: str, reference: np.ndarray, got: np.ndarray, tolerance: float | None = 1e-4,
            min_agreement: float | None = 0.999) -> ParityReport:
    """Compare (n, classes) logits of the exported graph against the reference."""
    if reference.shape != got.shape:
        raise ParityError(f"{name}: output shape {got.shape} differs from the student's {reference.shape}")
    diff = np.abs(reference.astype(np.float64) - got.astype(np.float64))
    agree = float(np.mean(reference.argmax(1) == got.argmax(1))) if len(reference) else 1.0
    return ParityReport(name, len(reference), float(diff.max(initial=0.0)), float(diff.mean()) if diff.size else 0.0,
                        agree, tolerance, min_agreement)


def gate(report: ParityReport) -> ParityReport:
    """Raise :class:`ParityError` (naming the measured figures) when the report fails its bounds."""
    if not report.passed:
        raise ParityError(f"parity gate failed — {report.line()}; bounds: max |Δlogit| ≤ {report.tolerance}, "
                          f"agreement ≥ {report.min_agreement}")
    return report


@torch.no_grad()
def reference_and_onnx(model_dir: str | Path, graphs: dict[str, Path | GraphStudent], queries: list[str],
                       items: list[str], batch_size: int = 32) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Logits of the PyTorch student and of each graph (an ONNX path for onnxruntime, or a loaded engine)
    on the same tokenised batches.

    Both sides get the tensors of :func:`distillery.student.model.encode`, so the comparison isolates
    the export; the server-side tokenizer is checked against ``encode`` separately.
    """
    from tqdm.auto import tqdm
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from distillery.serving.runtime import OnnxStudent
    from distillery.student.model import StudentMeta, encode

    meta = StudentMeta.load(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir))
    model.eval()
    sessions = {k: g if isinstance(g, GraphStudent) else OnnxStudent(g) for k, g in graphs.items()}
    order = np.argsort([len(q) + len(t) for q, t in zip(queries, items, strict=True)], kind="stable")
    ref = np.zeros((len(queries), len(meta.classes)), dtype=np.float32)
    outs = {k: np.zeros_like(ref) for k in sessions}
    for start in tqdm(range(0, len(order), batch_size), desc="parity", leave=False):
        idx = order[start:start + batch_size]
        batch = encode(tokenizer, [queries[i] for i in idx], [items[i] for i in idx], meta.max_length)
        ref[idx] = model(**batch).logits.float().numpy()
        feeds = {k: v.numpy() for k, v in batch.items()}
        for k, sess in sessions.items():
            outs[k][idx] = sess.run(feeds)["logits"]
    return ref, outs
