"""Query-grouped, seeded splits: seed (human-labelled) / logs (labels hidden) / validation / test.

Pairs of one query always land on one side.  The log pairs keep their gold labels only so that the
teacher's annotation accuracy can be measured: :func:`hide_labels` strips them before any training
step sees them.
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


def split_pairs(pairs: list[Pair], cfg: DataConfig) -> Splits:
    """Split by query into seed / logs / val / test following ``cfg``'s fractions and seed."""
    pairs = subsample_queries(pairs, cfg.max_queries, cfg.split_seed)
    queries = _order(sorted({p.query_id for p in pairs}), cfg.split_seed)
    nq = len(queries)
    if nq < 3:
        raise ValueError(f"split: {nq} distinct queries; at least 3 are needed to split by query")
    n_test = max(1, round(nq * cfg.test_fraction))
    n_val = max(1, round(nq * cfg.val_fraction)) if cfg.val_fraction > 0 else 0
    n_train = nq - n_test - n_val
    if n_train < 1:
        raise ValueError(f"split: {nq} queries leave no training query after test and validation")
    n_seed = max(1, round(n_train * cfg.seed_fraction))
    test_q = set(queries[:n_test])
    val_q = set(queries[n_test:n_test + n_val])
    train_q = queries[n_test + n_val:]
    seed_q = set(train_q[:n_seed])
    side = {q: "test" for q in test_q} | {q: "val" for q in val_q}
    side |= {q: ("seed" if q in seed_q else "logs") for q in train_q}
    parts: dict[str, list[Pair]] = {"seed": [], "logs": [], "val": [], "test": []}
    for p in pairs:
        parts[side[p.query_id]].append(p)
    return Splits(**parts)


def hide_labels(pairs: list[Pair]) -> list[Pair]:
    """Copies of ``pairs`` without their labels (the unlabelled search log a teacher annotates)."""
    return [dataclasses.replace(p, label=None, label_source=None) for p in pairs]


def shuffled(pairs: list[Pair], seed: int) -> list[Pair]:
    out = list(pairs)
    random.Random(seed).shuffle(out)
    return out
