"""The lexical floor: token-overlap and BM25 features of the query against each item field, and a
multinomial logistic regression over them.  What many search teams run today; every student is
compared with it.  Saved as JSON (no pickle), so a model directory is safe to load from anywhere.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distillery.config import LexicalConfig
from distillery.data.schema import LabelSet, Pair, label_indices

LEXICAL_FILE = "lexical.json"
FIELDS = ("title", "brand", "color", "attributes", "bullet_points", "description")
_TOKEN = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> list[str]:
    # A light plural fold ("towels" → "towel") is most of what stemming buys on product titles.
    return [t[:-1] if len(t) > 3 and t.endswith("s") and not t.endswith("ss") else t
            for t in _TOKEN.findall(text.lower())]


@dataclass
class FieldStats:
    """Document frequencies of one item field, for BM25's IDF and length normalisation."""

    df: dict[str, int]
    n_docs: int
    avgdl: float

    @classmethod
    def fit(cls, docs: list[list[str]]) -> FieldStats:
        df: Counter[str] = Counter()
        for d in docs:
            df.update(set(d))
        return cls(dict(df), len(docs), float(np.mean([len(d) for d in docs])) if docs else 0.0)

    def idf(self, term: str) -> float:
        n = self.df.get(term, 0)
        return math.log(1.0 + (self.n_docs - n + 0.5) / (n + 0.5))


def _field_features(q: list[str], doc: list[str], stats: FieldStats, cfg: LexicalConfig) -> list[float]:
    if not q:
        return [0.0] * 5
    tf = Counter(doc)
    qset = set(q)
    hit = [t for t in qset if t in tf]
    denom_len = cfg.bm25_k1 * (1 - cfg.bm25_b + cfg.bm25_b * len(doc) / max(stats.avgdl, 1e-9))
    bm25 = sum(stats.idf(t) * tf[t] * (cfg.bm25_k1 + 1) / (tf[t] + denom_len) for t in qset if t in tf)
    idf_total = sum(stats.idf(t) for t in qset) or 1.0
    union = qset | set(doc)
    return [
        len(hit) / len(qset),                          # share of query terms present
        sum(stats.idf(t) for t in hit) / idf_total,    # the same, IDF-weighted
        bm25,
        math.log1p(bm25),
        len(qset & set(doc)) / len(union) if union else 0.0,  # Jaccard
    ]


class LexicalModel:
    """Feature extraction plus a logistic regression; ``predict_proba(pairs)`` → (n, classes)."""

    def __init__(self, cfg: LexicalConfig, classes: list[str], stats: dict[str, FieldStats] | None = None,
                 coef: np.ndarray | None = None, intercept: np.ndarray | None = None,
                 mean: np.ndarray | None = None, scale: np.ndarray | None = None) -> None:
        self.cfg, self.classes = cfg, classes
        self.stats = stats or {}
        self.coef, self.intercept, self.mean, self.scale = coef, intercept, mean, scale

    def features(self, pairs: list[Pair]) -> np.ndarray:
        rows = []
        for p in pairs:
            q = tokens(p.query)
            row: list[float] = [len(q), sum(t.isdigit() for t in q)]
            for f in FIELDS:
                row += _field_features(q, tokens(getattr(p, f)), self.stats[f], self.cfg)
            all_text = set(tokens(" ".join(getattr(p, f) for f in FIELDS)))
            row.append(float(all(t in all_text for t in q)) if q else 0.0)
            rows.append(row)
        return np.asarray(rows, dtype=np.float64)

    def fit(self, pairs: list[Pair], label_set: LabelSet) -> LexicalModel:
        from sklearn.linear_model import LogisticRegression

        self.stats = {f: FieldStats.fit([tokens(getattr(p, f)) for p in pairs]) for f in FIELDS}
        x = self.features(pairs)
        y = np.asarray(label_indices(pairs, label_set, "lexical training"))
        self.mean, self.scale = x.mean(axis=0), x.std(axis=0) + 1e-9
        clf = LogisticRegression(C=self.cfg.C, class_weight="balanced", max_iter=2000)
        clf.fit((x - self.mean) / self.scale, y)
        # scikit-learn drops classes absent from y: expand back to the full label set
        coef = np.zeros((len(self.classes), x.shape[1]))
        intercept = np.full(len(self.classes), -1e9)
        if len(clf.classes_) == 2:  # binary LR stores one row; rebuild both sides
            coef[clf.classes_[1]], intercept[clf.classes_[1]] = clf.coef_[0], clf.intercept_[0]
            intercept[clf.classes_[0]] = 0.0
        else:
            for row, c in enumerate(clf.classes_):
                coef[c], intercept[c] = clf.coef_[row], clf.intercept_[row]
        self.coef, self.intercept = coef, intercept
        return self

    def predict_proba(self, pairs: list[Pair]) -> np.ndarray:
        if self.coef is None or self.intercept is None or self.mean is None or self.scale is None:
            raise RuntimeError("LexicalModel: predict before fit/load")
        z = ((self.features(pairs) - self.mean) / self.scale) @ self.coef.T + self.intercept
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return np.asarray(e / e.sum(axis=1, keepdims=True))

    def save(self, model_dir: str | Path) -> None:
        assert self.coef is not None and self.intercept is not None
        assert self.mean is not None and self.scale is not None
        obj: dict[str, Any] = {
            "config": self.cfg.__dict__, "classes": self.classes,
            "stats": {f: s.__dict__ for f, s in self.stats.items()},
            "coef": self.coef.tolist(), "intercept": self.intercept.tolist(),
            "mean": self.mean.tolist(), "scale": self.scale.tolist(),
        }
        Path(model_dir, LEXICAL_FILE).write_text(json.dumps(obj), encoding="utf-8")

    @classmethod
    def load(cls, model_dir: str | Path) -> LexicalModel:
        obj = json.loads(Path(model_dir, LEXICAL_FILE).read_text(encoding="utf-8"))
        return cls(
            LexicalConfig(**obj["config"]), obj["classes"],
            {f: FieldStats(**s) for f, s in obj["stats"].items()},
            np.asarray(obj["coef"]), np.asarray(obj["intercept"]), np.asarray(obj["mean"]),
            np.asarray(obj["scale"]),
        )
