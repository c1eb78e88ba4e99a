"""Bucketing stability, weight validation and minimal movement on weight changes."""

from __future__ import annotations

import pytest

from distillery.abtest.arms import N_BUCKETS, BucketTable, Router, SplitError, load_split, split_from_dict
from tests.abtest.helpers import two_arm

USERS = [f"user-{i}" for i in range(20000)]


def test_assignment_is_sticky_and_reproducible_across_routers():
    a, b = Router(two_arm()), Router(two_arm())
    assert [a.assign(u).name for u in USERS[:2000]] == [b.assign(u).name for u in USERS[:2000]]
    assert {a.assign("alice").name for _ in range(10)} == {a.assign("alice").name}


def test_shares_follow_weights():
    r = Router(two_arm((30, 70)))
    share = sum(r.assign(u).name == "challenger" for u in USERS) / len(USERS)
    assert abs(share - 0.70) < 0.015


def test_salt_changes_the_assignment():
    a, b = Router(two_arm(salt="a")), Router(two_arm(salt="b"))
    same = sum(a.assign(u).name == b.assign(u).name for u in USERS[:4000]) / 4000
    assert 0.4 < same < 0.6  # independent re-randomisation


def test_weight_change_moves_only_the_users_it_must():
    r = Router(two_arm((50, 50)))
    before = {u: r.assign(u).name for u in USERS}
    moved = r.update(two_arm((80, 20)))
    after = {u: r.assign(u).name for u in USERS}
    assert moved == 3000  # 30% of the buckets: the minimum for 50/50 → 80/20
    assert all(after[u] == "champion" for u in USERS if before[u] == "champion")
    switched = sum(before[u] != after[u] for u in USERS) / len(USERS)
    assert abs(switched - 0.30) < 0.015
    assert r.table.counts() == {"champion": 8000, "challenger": 2000}


def test_abn_rebalance_is_minimal_and_new_arm_takes_from_others():
    table = BucketTable.initial({"a": 50, "b": 50})
    new, moved = table.rebalance({"a": 40, "b": 40, "c": 20})
    assert moved == 2000 and new.counts() == {"a": 4000, "b": 4000, "c": 2000}
    kept = sum(o == n for o, n in zip(table.owners, new.owners, strict=True))
    assert kept == N_BUCKETS - 2000


def test_injectable_hash_makes_routing_deterministic():
    r = Router(two_arm((50, 50)), hash_fn=lambda salt, uid: int(uid))
    assert r.assign("0").name == "champion" and r.assign("4999").name == "champion"
    assert r.assign("5000").name == "challenger" and r.assign("19999").name == "challenger"


@pytest.mark.parametrize(("weights", "msg"), [
    ((60, 50), "must sum to 100"),
    ((-10, 110), "non-negative"),
    ((50.001, 49.999), "two decimals"),
])
def test_bad_weights_are_refused_naming_the_field(weights, msg):
    with pytest.raises(SplitError, match=msg):
        two_arm(weights)


def test_bad_split_files_name_the_file(tmp_path):
    p = tmp_path / "split.yaml"
    p.write_text("experiment: e\nsalt: s\nchampion: nobody\narms:\n"
                 "  - {name: a, model: m, weight: 50}\n  - {name: b, model: m, weight: 50}\n")
    with pytest.raises(SplitError, match=r"split.yaml.*champion='nobody'"):
        load_split(p)
    with pytest.raises(SplitError, match="unknown field"):
        split_from_dict({"experiment": "e", "salt": "s", "champion": "a", "arms": [], "colour": 1})
    with pytest.raises(SplitError, match="unique"):
        split_from_dict({"experiment": "e", "salt": "s", "champion": "a", "arms": [
            {"name": "a", "model": "m", "weight": 50}, {"name": "a", "model": "m", "weight": 50}]})
