"""Query-grouped, seeded splits: seed (human-labelled) / logs (labels hidden) / validation / test.

Pairs of one query always land on one side.  The log pairs keep their gold labels only so that the
teacher's annotation accuracy can be measured: :func:`hide_labels` strips them before any training
step sees them.  :func:`query_folds` deals the non-test queries into cross-validation folds::

    splits = split_pairs(pairs, cfg.data)          # seed / logs / val / test
    for fold in query_folds(pairs, cfg.data, k=5):  # fold.splits.test: the fold's held-out queries
        run_distill(fold.splits, annotations, cfg, f"runs/f{fold.index}", method="crsd")
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from dataclasses import dataclass

from distillery.config import DataConfig
from distillery.data.schema import Pair


@dataclass
class Splits:
    seed: list[Pair]
    logs: list[Pair]
    val: list[Pair]
    test: list[Pair]

    @property
    def train(self) -> list[Pair]:
        """Every training pair with its human label (seed and logs): the upper reference only."""
        return self.seed + self.logs

    def sizes(self) -> dict[str, dict[str, int]]:
        return {
            name: {"pairs": len(part), "queries": len({p.query_id for p in part})}
            for name, part in (("seed", self.seed), ("logs", self.logs), ("val", self.val), ("test", self.test))
        }


def _order(query_ids: list[str], seed: int) -> list[str]:
    # Sort by a keyed hash rather than shuffling a list: a query's side then does not depend on
    # which other queries happen to be in the file.
    def key(q: str) -> str:
        return hashlib.sha1(f"{seed}:{q}".encode()).hexdigest()

    return sorted(query_ids, key=key)


def subsample_queries(pairs: list[Pair], max_queries: int, seed: int) -> list[Pair]:
    if max_queries <= 0:
        return pairs
    keep = set(_order(sorted({p.query_id for p in pairs}), seed + 1)[:max_queries])
    return [p for p in pairs if p.query_id in keep]


def _plan(pairs: list[Pair], cfg: DataConfig) -> tuple[list[Pair], list[str], int, int]:
    """The subsampled pairs, their queries in split order, and how many of them go to test and validation."""
    pairs = subsample_queries(pairs, cfg.max_queries, cfg.split_seed)
    queries = _order(sorted({p.query_id for p in pairs}), cfg.split_seed)
    nq = len(queries)
    if nq < 3:
        raise ValueError(f"split: {nq} distinct queries; at least 3 are needed to split by query")
    n_test = max(1, round(nq * cfg.test_fraction))
    n_val = max(1, round(nq * cfg.val_fraction)) if cfg.val_fraction > 0 else 0
    if nq - n_test - n_val < 1:
        raise ValueError(f"split: {nq} queries leave no training query after test and validation")
    return pairs, queries, n_test, n_val


def _dev_sides(queries: list[str], n_val: int, seed_fraction: float) -> dict[str, str]:
    """Validation, seed and logs sides of ordered non-test queries: the first ``n_val`` validate, and of the
    rest the first ``seed_fraction`` (at least one) keep their human labels."""
    train_q = queries[n_val:]
    n_seed = max(1, round(len(train_q) * seed_fraction))
    return {q: "val" for q in queries[:n_val]} | {q: ("seed" if i < n_seed else "logs") for i, q in enumerate(train_q)}


def _assemble(pairs: list[Pair], side: dict[str, str]) -> Splits:
    """Pairs by their query's side, in input order; a pair whose query has no side is left out."""
    parts: dict[str, list[Pair]] = {"seed": [], "logs": [], "val": [], "test": []}
    for p in pairs:
        if p.query_id in side:
            parts[side[p.query_id]].append(p)
    return Splits(**parts)


def split_pairs(pairs: list[Pair], cfg: DataConfig) -> Splits:
    """Split by query into seed / logs / val / test following ``cfg``'s fractions and seed."""
    pairs, queries, n_test, n_val = _plan(pairs, cfg)
    side = {q: "test" for q in queries[:n_test]} | _dev_sides(queries[n_test:], n_val, cfg.seed_fraction)
    return _assemble(pairs, side)


@dataclass
class Fold:
    """One fold of query-grouped cross-validation: ``splits.test`` holds the fold's held-out development
    queries (with their labels); seed / logs / val come from the other development queries."""

    index: int
    held_out: list[str]
    splits: Splits


def query_folds(pairs: list[Pair], cfg: DataConfig, k: int) -> list[Fold]:
    """``k`` query-grouped folds over the development queries: every query that :func:`split_pairs` does not
    put in test, dealt round-robin in a keyed-hash order (fold sizes differ by at most one query).  The real
    test queries appear in no fold, so settings chosen on the folds never see them."""
    pairs, queries, n_test, _ = _plan(pairs, cfg)
    dev = queries[n_test:]
    if not 2 <= k <= len(dev):
        raise ValueError(f"query_folds: k={k} must be between 2 and the {len(dev)} development queries "
                         f"({len(queries)} queries, {n_test} held out for test)")
    # A keyed hash of its own (not the split's order) deals the folds, so folds do not follow the val/seed order.
    dealt = _order(dev, cfg.split_seed + 2)
    folds = []
    for i in range(k):
        held = dealt[i::k]
        held_set = set(held)
        rest = [q for q in dev if q not in held_set]  # still in split order: the sides follow split_pairs' rule
        n_val = max(1, round(len(rest) * cfg.val_fraction)) if cfg.val_fraction > 0 else 0
        if len(rest) - n_val < 1:
            raise ValueError(f"query_folds: k={k} leaves fold {i} {len(rest)} development queries, "
                             f"none for training after {n_val} for validation")
        side = {q: "test" for q in held} | _dev_sides(rest, n_val, cfg.seed_fraction)
        folds.append(Fold(i, sorted(held), _assemble(pairs, side)))
    return folds


def hide_labels(pairs: list[Pair]) -> list[Pair]:
    """Copies of ``pairs`` without their labels (the unlabelled search log a teacher annotates)."""
    return [dataclasses.replace(p, label=None, label_source=None) for p in pairs]


def shuffled(pairs: list[Pair], seed: int) -> list[Pair]:
    out = list(pairs)
    random.Random(seed).shuffle(out)
    return out
