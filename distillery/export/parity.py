"""The parity gate: every graph that can be served must give the PyTorch student's logits on an evaluation set.

Each precision has its own bounds (:class:`Bound`, set in ``export.*``): fp32 graphs must agree within
``max_abs_diff`` ≤ 1e-4 on every logit and pick the same label on at least 99.9% of pairs; the int8 graph
and OpenVINO's bf16 run are held to their own, looser agreement (and logit) bounds.  The figures are
measured on the machine that exports, with the precision the engine really ran there
(:attr:`ParityReport.ran`).
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


@dataclass(frozen=True)
class Bound:
    """What one precision must show against the PyTorch student on the parity pairs."""

    min_agreement: float
    """Smallest share of pairs on which the graph must pick PyTorch's label."""
    max_abs_diff: float | None = None
    """Largest |logit difference| allowed on any pair (None: logits not gated, only labels)."""
    source: str = ""
    """The settings that set these bounds (e.g. ``export.int8_*``), named when the gate refuses a graph."""


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
    ran: str = "fp32"
    """The precision the engine really ran on this machine (OpenVINO keeps fp32 where bf16 is not native)."""

    @property
    def passed(self) -> bool:
        tol_ok = self.tolerance is None or self.max_abs_diff <= self.tolerance
        agree_ok = self.min_agreement is None or self.agreement >= self.min_agreement
        return tol_ok and agree_ok

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def failures(self) -> list[str]:
        """Each bound missed, as measured figure vs bound (empty when the report passes)."""
        out = []
        if self.min_agreement is not None and self.agreement < self.min_agreement:
            out.append(f"label agreement {100 * self.agreement:.2f}% < {100 * self.min_agreement:.2f}%")
        if self.tolerance is not None and self.max_abs_diff > self.tolerance:
            out.append(f"max |Δlogit| {self.max_abs_diff:.2e} > {self.tolerance:.2e}")
        return out

    def line(self) -> str:
        gated = self.tolerance is not None or self.min_agreement is not None
        gate = "not gated" if not gated else ("PASS" if self.passed else "FAIL")
        return (f"{self.name}: {self.n} pairs, max |Δlogit| {self.max_abs_diff:.2e}, "
                f"label agreement {100 * self.agreement:.2f}% ({gate})")


def compare(name: str, reference: np.ndarray, got: np.ndarray, tolerance: float | None = 1e-4,
            min_agreement: float | None = 0.999, ran: str = "fp32") -> ParityReport:
    """Compare (n, classes) logits of the exported graph against the reference."""
    if reference.shape != got.shape:
        raise ParityError(f"{name}: output shape {got.shape} differs from the student's {reference.shape}")
    diff = np.abs(reference.astype(np.float64) - got.astype(np.float64))
    agree = float(np.mean(reference.argmax(1) == got.argmax(1))) if len(reference) else 1.0
    return ParityReport(name, len(reference), float(diff.max(initial=0.0)), float(diff.mean()) if diff.size else 0.0,
                        agree, tolerance, min_agreement, ran)


def gate(report: ParityReport) -> ParityReport:
    """Raise :class:`ParityError` (naming the measured figures) when the report fails its bounds."""
    if not report.passed:
        raise ParityError(f"parity gate failed — {report.line()}; bounds: max |Δlogit| ≤ {report.tolerance}, "
                          f"agreement ≥ {report.min_agreement}")
    return report


def refusal(report: ParityReport, bound: Bound) -> str | None:
    """Why a lower-precision graph is not served (its figures vs its bounds), or None when it passes."""
    missed = report.failures()
    if not missed:
        return None
    where = f" ({bound.source})" if bound.source else ""
    return f"{report.name} (ran {report.ran}) on {report.n} pairs: {'; '.join(missed)}{where}"


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
