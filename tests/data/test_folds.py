"""Query-grouped k-fold cross-validation folds (``distillery.data.splits.query_folds``)."""

from __future__ import annotations

import pytest

from distillery.config import DataConfig
from distillery.data import load, split_pairs
from distillery.data.schema import Pair
from distillery.data.splits import Fold, query_folds
from distillery.data.synthetic import generate


def _queries(pairs: list[Pair]) -> set[str]:
    return {p.query_id for p in pairs}


def _check_folds(pairs: list[Pair], cfg: DataConfig, k: int) -> list[Fold]:
    folds = query_folds(pairs, cfg, k)
    real = split_pairs(pairs, cfg)
    test_q = _queries(real.test)
    dev_q = _queries(real.seed + real.logs + real.val)
    assert len(folds) == k and [f.index for f in folds] == list(range(k))
    held = [q for f in folds for q in f.held_out]
    assert sorted(held) == sorted(dev_q)  # every development query held out exactly once
    assert max(len(f.held_out) for f in folds) - min(len(f.held_out) for f in folds) <= 1
    for f in folds:
        s = f.splits
        assert _queries(s.test) == set(f.held_out)
        train_side = [_queries(s.seed), _queries(s.logs), _queries(s.val)]
        assert all(not side & set(f.held_out) for side in train_side)
        assert not (train_side[0] & train_side[1]) and not (train_side[0] | train_side[1]) & train_side[2]
        assert set().union(*train_side, f.held_out) == dev_q  # the fold uses every development query ...
        assert not _queries(s.seed + s.logs + s.val + s.test) & test_q  # ... and no real test query
        assert s.seed and bool(s.val) == (cfg.val_fraction > 0)
        # pairs of a query are never split: each fold holds every development pair exactly once
        fold_pairs = sorted((p.query_id, p.item_id) for p in s.seed + s.logs + s.val + s.test)
        assert fold_pairs == sorted((p.query_id, p.item_id) for p in pairs if p.query_id in dev_q)
        assert all(p.label is not None for p in s.test)  # held-out pairs keep their labels for scoring
    return folds


def test_synthetic_folds_cover_the_development_queries_once():
    pairs = generate(600, seed=4)
    folds = _check_folds(pairs, DataConfig(), k=5)
    again = query_folds(pairs, DataConfig(), k=5)
    assert [(f.held_out, [p.item_id for p in f.splits.seed]) for f in folds] == \
        [(f.held_out, [p.item_id for p in f.splits.seed]) for f in again]
    other = query_folds(pairs, DataConfig(split_seed=99), k=5)
    assert [f.held_out for f in other] != [f.held_out for f in folds]


def test_esci_five_folds_over_the_75_development_queries(esci_path):
    pairs = load(f"esci:{esci_path}")[0]
    cfg = DataConfig(label_set="4class")
    folds = _check_folds(pairs, cfg, k=5)
    assert [len(f.held_out) for f in folds] == [15] * 5
    # val and seed follow split_pairs' rule on the 60 remaining queries: 6 validate, 11 of 54 keep labels
    assert {len(_queries(f.splits.val)) for f in folds} == {6}
    assert {len(_queries(f.splits.seed)) for f in folds} == {11}


def test_hand_made_pairs_and_uneven_folds():
    pairs = [Pair(f"q{i}", f"query {i}", f"i{i}-{j}", label="Exact") for i in range(12) for j in range(3)]
    cfg = DataConfig(test_fraction=0.25, val_fraction=0.0)
    folds = _check_folds(pairs, cfg, k=4)  # 9 development queries: folds of 3, 2, 2, 2
    assert sorted(len(f.held_out) for f in folds) == [2, 2, 2, 3]
    assert all(not f.splits.val for f in folds)  # val_fraction 0: no validation queries
    _check_folds(pairs, cfg, k=9)  # leave-one-query-out


@pytest.mark.parametrize("k", [0, 1, 10])
def test_k_out_of_range_names_k_and_the_counts(k):
    pairs = [Pair(f"q{i}", f"query {i}", f"i{i}", label="Exact") for i in range(12)]
    with pytest.raises(ValueError, match=rf"k={k} must be between 2 and the 9 development queries \(12 queries, "
                                         r"3 held out for test\)"):
        query_folds(pairs, DataConfig(test_fraction=0.25, val_fraction=0.0), k)


def test_too_few_training_queries_in_a_fold_is_an_error():
    pairs = [Pair(f"q{i}", f"query {i}", f"i{i}", label="Exact") for i in range(3)]
    # 3 queries: 1 test, 2 development; each fold keeps 1, which validation would take whole
    assert len(query_folds(pairs, DataConfig(val_fraction=0.0), 2)) == 2
    with pytest.raises(ValueError, match="k=2 leaves fold 0 1 development queries, none for training"):
        query_folds(pairs, DataConfig(val_fraction=0.1), 2)
