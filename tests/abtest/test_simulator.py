"""The simulated users: determinism, position bias, better rankings earn more, labels and events."""

from __future__ import annotations

import numpy as np
import pytest

from distillery.abtest.arms import Router
from distillery.abtest.experiment import InProcessArm, in_process_server
from distillery.abtest.rankers import OracleRanker, RandomRanker, WorstRanker
from distillery.abtest.simulator import ClickModel, SimConfig, build_queries, observe, plan_batch, simulate_clicks
from distillery.data.schema import DataError, Pair
from tests.abtest.helpers import two_arm


def _run(queries, ranker, seed=0, users=400, events=None):
    sim = SimConfig(users_per_batch=users, seed=seed)
    serve = in_process_server(queries, Router(two_arm((100, 0))), {"champion": InProcessArm(ranker),
                                                                    "challenger": InProcessArm(ranker)})
    plan = plan_batch(sim, len(queries), 0)
    return observe(plan, serve(plan), queries, sim, events)


def test_same_seed_same_users_and_behaviour(queries):
    a, b = _run(queries, OracleRanker(), seed=1), _run(queries, OracleRanker(), seed=1)
    assert a.user_ids == b.user_ids and a.data == b.data
    assert _run(queries, OracleRanker(), seed=2).data != a.data


def test_position_bias_under_a_random_ranking():
    rng = np.random.default_rng(0)
    grades = rng.integers(0, 4, (20000, 10))
    clicks, _, _ = simulate_clicks(grades, np.ones((20000, 10)), ClickModel(), rng)
    per_pos = clicks.mean(0)
    assert per_pos[0] > 2 * per_pos[9]
    assert np.all(np.diff(per_pos) < 0.005)  # non-increasing down the list (up to noise)


def test_higher_grades_are_clicked_more():
    rng = np.random.default_rng(1)
    for g in range(3):
        lo = simulate_clicks(np.full((5000, 1), g), np.ones((5000, 1)), ClickModel(), rng)[0].mean()
        hi = simulate_clicks(np.full((5000, 1), g + 1), np.ones((5000, 1)), ClickModel(), rng)[0].mean()
        assert hi > lo


def test_better_rankings_earn_more_clicks_orders_and_ndcg(queries):
    tables = {n: _run(queries, r, users=1500) for n, r in
              (("oracle", OracleRanker()), ("random", RandomRanker()), ("worst", WorstRanker()))}
    for col in ("clicks", "conversions", "gtv", "ndcg_sum"):
        o, r, w = (tables[n].column(col).sum() for n in ("oracle", "random", "worst"))
        assert o > r > w, col


def test_events_describe_what_happened(queries):
    events: list[dict] = []
    table = _run(queries, OracleRanker(), users=200, events=events.append)
    kinds = [e["event"] for e in events]
    assert kinds.count("impression") == table.column("sessions").sum()
    assert kinds.count("click") == table.column("clicks").sum()
    assert kinds.count("conversion") == table.column("conversions").sum()
    conv_value = sum(e["value"] for e in events if e["event"] == "conversion")
    assert conv_value == pytest.approx(table.column("gtv").sum(), abs=0.01 * kinds.count("conversion") + 1e-6)
    shown = next(e for e in events if e["event"] == "impression")["items"]
    assert len(shown) <= 10 and len(set(shown)) == len(shown)


def test_esci_labels_are_grades_and_missing_truth_is_named():
    pairs = [Pair("q1", "shoe", f"i{k}", title="t", label=lab) for k, lab in enumerate(["E", "S", "C", "I"])]
    (q,) = build_queries(pairs)
    assert q.grades.tolist() == [3, 2, 1, 0]
    with pytest.raises(DataError, match="q1/x"):
        build_queries([Pair("q1", "shoe", "x"), Pair("q1", "shoe", "y", label="Exact")], "esci:dev")
