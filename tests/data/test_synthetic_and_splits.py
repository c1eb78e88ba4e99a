from __future__ import annotations

from collections import Counter

from distillery.config import DataConfig
from distillery.data import load, split_pairs
from distillery.data.splits import hide_labels
from distillery.data.synthetic import Intent, Service, generate, grade


def test_generator_is_deterministic():
    a = generate(500, seed=7)
    b = generate(500, seed=7)
    c = generate(500, seed=8)
    assert [p.to_json() for p in a] == [p.to_json() for p in b]
    assert [p.to_json() for p in a] != [p.to_json() for p in c]
    assert len(a) == 500


def test_labels_agree_with_intents_without_noise():
    pairs = generate(1500, seed=3, noise=0.0)
    for p in pairs:
        intent = Intent(**p.meta["intent"])
        svc = Service(**{**p.meta["service"], "attrs": tuple(p.meta["service"]["attrs"])})
        assert p.label == grade(intent, svc) == p.meta["true_label"]
    counts = Counter(p.label for p in pairs)
    assert all(counts[c] > 0.15 * len(pairs) for c in ("Exact", "Partial", "Irrelevant")), counts


def test_grade_rules_on_hand_made_cases():
    svc = Service("s", "Jade Sichuan Kitchen", "restaurant", "sichuan", ("delivery",), "Haidian", 80)
    assert grade(Intent("restaurant", "sichuan", "delivery", "Haidian", "mid-range"), svc) == "Exact"
    assert grade(Intent("restaurant", "sichuan", "halal", None, None), svc) == "Partial"
    assert grade(Intent("restaurant", None, None, "Chaoyang", None), svc) == "Partial"
    assert grade(Intent("gym", None, None, None, None), svc) == "Irrelevant"
    spa = Service("t", "Oasis", "massage parlor", "tuina", ("open late",), "Haidian", 100)
    assert grade(Intent("spa", None, None, None, None), spa) == "Partial"  # sibling category


def test_noise_rate_is_respected():
    pairs = generate(4000, seed=1, noise=0.2)
    flipped = sum(p.label != p.meta["true_label"] for p in pairs) / len(pairs)
    assert 0.17 < flipped < 0.23


def test_splits_never_share_a_query_and_are_seeded(esci_path):
    pairs = load(f"esci:{esci_path}")[0]
    cfg = DataConfig(seed_fraction=0.2)
    s = split_pairs(pairs, cfg)
    sides = [{p.query_id for p in part} for part in (s.seed, s.logs, s.val, s.test)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not sides[i] & sides[j]
    assert sum(len(x) for x in sides) == 94
    assert len(s.seed) + len(s.logs) + len(s.val) + len(s.test) == len(pairs)  # no row lost
    assert round(len(sides[0]) / (len(sides[0]) + len(sides[1])), 1) == 0.2
    again = split_pairs(pairs, cfg)
    assert [p.item_id for p in again.test] == [p.item_id for p in s.test]
    other = split_pairs(pairs, DataConfig(split_seed=99))
    assert {p.query_id for p in other.test} != sides[3]


def test_query_side_is_stable_when_other_queries_change():
    pairs = generate(1200, seed=2)
    cfg = DataConfig()
    full = split_pairs(pairs, cfg)
    test_q = {p.query_id for p in full.test}
    dropped = {p.query_id for p in full.logs[:30]}
    part = split_pairs([p for p in pairs if p.query_id not in dropped], cfg)
    # hashing by (seed, query) keeps most test queries on the test side
    assert len({p.query_id for p in part.test} & test_q) >= 0.7 * len(test_q)


def test_hidden_logs_carry_no_label():
    pairs = generate(100, seed=0)
    hidden = hide_labels(pairs)
    assert all(p.label is None and p.label_source is None for p in hidden)
    assert all(p.label is not None for p in pairs)  # originals untouched
