"""In-process rankers for simulated experiments (no server): oracle, random, worst, and model scores.

The splitter serves real models through Triton; these let the A/A, power and guardrail studies run
thousands of simulated users per second on the same simulator and gate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from distillery.abtest.simulator import GRADES, QueryGroup


class Ranker(Protocol):
    def order(self, q: QueryGroup, rng: np.random.Generator) -> np.ndarray:
        """Indices of ``q.items`` from the top of the list down."""
        ...


class OracleRanker:
    """Sorts by the true grade (random order within a grade): the best possible ranking."""

    def order(self, q: QueryGroup, rng: np.random.Generator) -> np.ndarray:
        return np.lexsort((rng.random(len(q.grades)), -q.grades))


class RandomRanker:
    """A fresh random permutation per search: the floor."""

    def order(self, q: QueryGroup, rng: np.random.Generator) -> np.ndarray:
        return rng.permutation(len(q.grades))


class WorstRanker:
    """Sorts by the true grade ascending: a challenger that is truly worse."""

    def order(self, q: QueryGroup, rng: np.random.Generator) -> np.ndarray:
        return np.lexsort((rng.random(len(q.grades)), q.grades))


class ScoreRanker:
    """Sorts by precomputed model scores per query (ties by position, as a server would)."""

    def __init__(self, scores: dict[str, np.ndarray]) -> None:
        self.scores = scores

    def order(self, q: QueryGroup, rng: np.random.Generator) -> np.ndarray:
        return np.argsort(-self.scores[q.query_id], kind="stable")


def expected_grade(probs: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """A ranking score from class probabilities: the expected relevance grade."""
    grades = np.array([GRADES[c.lower()] for c in classes], dtype=float)
    return np.asarray(probs, dtype=float) @ grades


def model_ranker(model_dir: str, queries: Sequence[QueryGroup], batch_size: int = 64) -> ScoreRanker:
    """Score every candidate once with a saved student (``Classifier``) and rank by expected grade."""
    from distillery.student.predictor import Classifier

    clf = Classifier(model_dir, batch_size=batch_size)
    pairs = [p for q in queries for p in q.items]
    scores = expected_grade(clf.predict_proba(pairs, progress=True), clf.classes)
    out, i = {}, 0
    for q in queries:
        out[q.query_id] = scores[i: i + len(q.items)]
        i += len(q.items)
    return ScoreRanker(out)


def noisy_oracle(queries: Sequence[QueryGroup], noise: float, seed: int) -> ScoreRanker:
    """A fixed, imperfect model of known quality: true grade plus N(0, noise²) per item, drawn once."""
    rng = np.random.default_rng(seed)
    return ScoreRanker({q.query_id: q.grades + rng.normal(0.0, noise, len(q.grades)) for q in queries})
