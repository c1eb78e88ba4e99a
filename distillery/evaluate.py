"""Classification metrics for relevance labels, and their JSON / table / PNG forms.

``compute_metrics`` is pure numpy (tests compare it with scikit-learn on fixed arrays);
``save_confusion_png`` and ``metrics_table`` are the readable forms every report uses.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np


def _prf(conf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    tp = np.diag(conf).astype(float)
    pred = conf.sum(axis=0).astype(float)
    true = conf.sum(axis=1).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(pred > 0, tp / pred, 0.0)
        recall = np.where(true > 0, tp / true, 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / denom, 0.0)
    return precision, recall, f1, true


def _binary_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Mann–Whitney AUC with average ranks for ties; None when one side is empty."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=float)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> float:
    """ECE of the top-class confidence over equal-width bins (Guo et al., 2017)."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        mask = (conf > lo) & (conf <= hi)
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return float(ece)


def compute_metrics(y_true: Any, y_pred: Any, classes: list[str] | tuple[str, ...],
                    probs: Any | None = None) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class P/R/F1/support, confusion; with ``probs`` also AUC and ECE."""
    yt = np.asarray(y_true, dtype=int)
    yp = np.asarray(y_pred, dtype=int)
    k = len(classes)
    if len(yt) == 0:
        raise ValueError("compute_metrics: no examples")
    conf = np.zeros((k, k), dtype=int)
    np.add.at(conf, (yt, yp), 1)
    precision, recall, f1, support = _prf(conf)
    present = support > 0
    out: dict[str, Any] = {
        "n": len(yt),
        "accuracy": float((yt == yp).mean()),
        # macro over the classes present in y_true or y_pred, as scikit-learn's default does
        "macro_f1": float(f1[present | (conf.sum(axis=0) > 0)].mean()),
        "classes": list(classes),
        "per_class": {
            c: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                "support": int(support[i])}
            for i, c in enumerate(classes)
        },
        "confusion": conf.tolist(),
    }
    if probs is not None:
        pr = np.asarray(probs, dtype=float)
        aucs = {c: _binary_auc(pr[:, i], yt == i) for i, c in enumerate(classes)}
        valid = [a for a in aucs.values() if a is not None]
        out["auc_ovr"] = aucs
        out["macro_auc_ovr"] = float(np.mean(valid)) if valid else None
        out["ece"] = expected_calibration_error(pr, yt)
    return out


def metrics_table(metrics: dict[str, Any], title: str = "") -> str:
    """A Markdown table of the per-class figures with the headline numbers above it."""
    lines = []
    if title:
        lines.append(f"### {title}\n")
    head = f"n={metrics['n']} · accuracy {metrics['accuracy']:.4f} · macro-F1 {metrics['macro_f1']:.4f}"
    if metrics.get("macro_auc_ovr") is not None:
        head += f" · macro AUC {metrics['macro_auc_ovr']:.4f} · ECE {metrics['ece']:.4f}"
    lines += [head, "", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for c, m in metrics["per_class"].items():
        lines.append(f"| {c} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    return "\n".join(lines) + "\n"


def save_confusion_png(metrics: dict[str, Any], path: str | Path, title: str = "Confusion matrix") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = np.asarray(metrics["confusion"])
    classes = metrics["classes"]
    fig, ax = plt.subplots(figsize=(1.4 * len(classes) + 2, 1.2 * len(classes) + 1.5))
    ax.imshow(conf, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            color = "white" if conf[i, j] > conf.max() / 2 else "black"
            ax.text(j, i, str(conf[i, j]), ha="center", va="center", color=color)
    ax.set_title(f"{title}\nmacro-F1 {metrics['macro_f1']:.3f}, accuracy {metrics['accuracy']:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_curves_png(history: list[dict[str, float]], path: str | Path, title: str = "Training") -> None:
    """Training loss and validation macro-F1 per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax1 = plt.subplots(figsize=(6, 3.6))
    ax1.plot(epochs, [h["train_loss"] for h in history], "o-", color="tab:blue", label="train loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("train loss", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(epochs, [h["val_macro_f1"] for h in history], "s-", color="tab:orange", label="val macro-F1")
    ax2.set_ylabel("validation macro-F1", color="tab:orange")
    ax1.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_json(obj: dict[str, Any], path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")
