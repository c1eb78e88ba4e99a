from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

from distillery.evaluate import compute_metrics, expected_calibration_error, save_confusion_png

CLASSES = ["Exact", "Partial", "Irrelevant"]


@pytest.fixture()
def arrays():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=300)
    logits = rng.normal(size=(300, 3)) + 1.5 * np.eye(3)[y]
    logits[::7] = np.round(logits[::7], 1)  # ties in the scores exercise the AUC's average ranks
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs.argmax(axis=1), probs


def test_metrics_equal_scikit_learn(arrays):
    y, pred, probs = arrays
    m = compute_metrics(y, pred, CLASSES, probs)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=[0, 1, 2], zero_division=0)
    for i, c in enumerate(CLASSES):
        assert m["per_class"][c]["precision"] == pytest.approx(p[i])
        assert m["per_class"][c]["recall"] == pytest.approx(r[i])
        assert m["per_class"][c]["f1"] == pytest.approx(f[i])
        assert m["per_class"][c]["support"] == s[i]
        assert m["auc_ovr"][c] == pytest.approx(roc_auc_score(y == i, probs[:, i]))
    assert m["confusion"] == confusion_matrix(y, pred, labels=[0, 1, 2]).tolist()
    assert m["macro_auc_ovr"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr", average="macro"))


def test_macro_f1_with_a_never_predicted_class_matches_sklearn():
    y = [0, 0, 1, 1, 2, 2]
    pred = [0, 0, 0, 1, 1, 0]
    m = compute_metrics(y, pred, CLASSES)
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    assert m["per_class"]["Irrelevant"]["f1"] == 0.0


def test_ece_by_hand():
    probs = np.array([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.34, 0.33, 0.33]])
    y = np.array([0, 1, 1, 2])
    # bins of width 1/15: confidences 0.9, 0.6, 0.7, 0.34 fall in four different bins
    expected = (abs(1 - 0.9) + abs(0 - 0.6) + abs(1 - 0.7) + abs(0 - 0.34)) / 4
    assert expected_calibration_error(probs, y) == pytest.approx(expected)


def test_confusion_png_is_written(tmp_path, arrays):
    y, pred, probs = arrays
    m = compute_metrics(y, pred, CLASSES, probs)
    save_confusion_png(m, tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.dumps(m)  # JSON-serialisable as written by evaluate
