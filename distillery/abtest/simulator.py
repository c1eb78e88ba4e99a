"""Simulated users: sessions over queries with known true grades, and a position-biased click model.

Each user issues a few searches; each search is served by the user's arm (in process or through the
splitter over HTTP) as a ranked list; the user then scans the list top-down under a **dependent
click model** (a cascade with position bias, Guo et al. 2009): at each shown position the item is
clicked with a probability set by its *true* grade; after a click the user may convert (an order of
the item's value) and stops if satisfied, else goes on; after no click the user goes on with
probability ``continue_prob``, so lower positions are seen less often. A better ranking therefore
earns more clicks, conversions and order value, as in the paper's online test.

Randomness: each batch draws from ``numpy.random.default_rng([seed, batch])``, and outcomes are
simulated in user order after the whole batch is served, so concurrent HTTP serving gives the same
events as in-process serving for the same rankings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from distillery.abtest.metrics import UserTable
from distillery.data.schema import DataError, Pair

# Integer relevance grade of each label name (3-class synthetic labels and the 4-class ESCI ones).
GRADES = {"exact": 3, "e": 3, "substitute": 2, "s": 2, "partial": 2, "complement": 1, "c": 1,
          "irrelevant": 0, "i": 0}


@dataclass(frozen=True)
class ClickModel:
    """Per-grade behaviour of a simulated user (index = grade 0..3: irrelevant … exact)."""

    click: tuple[float, ...] = (0.03, 0.10, 0.22, 0.45)
    """Click probability of an examined item of each grade."""
    convert: tuple[float, ...] = (0.0, 0.03, 0.08, 0.20)
    """Order probability after a click, by grade."""
    satisfied: tuple[float, ...] = (0.05, 0.25, 0.45, 0.70)
    """Probability that a click ends the session, by grade."""
    continue_prob: float = 0.85
    """Probability of examining the next position after no click (the position bias)."""

    def __post_init__(self) -> None:
        for name in ("click", "convert", "satisfied"):
            vals = getattr(self, name)
            if len(vals) != 4 or not all(0.0 <= v <= 1.0 for v in vals):
                raise ValueError(f"ClickModel.{name}={vals!r}: need 4 probabilities in [0, 1]")
        if not 0.0 <= self.continue_prob <= 1.0:
            raise ValueError(f"ClickModel.continue_prob={self.continue_prob!r}: must be in [0, 1]")


@dataclass
class QueryGroup:
    """One query's candidate items with their true grades and order values."""

    query_id: str
    query: str
    items: list[Pair]
    grades: np.ndarray
    values: np.ndarray
    ideal_dcg: dict[int, float] = field(default_factory=dict, repr=False)
    """DCG@k of the best ordering, filled on first use per k."""


def true_grade(pair: Pair, where: str) -> int:
    """The grade of a pair: ``meta["true_label"]`` (synthetic marketplace) or else its human label."""
    label = pair.meta.get("true_label") or pair.label
    if label is None or str(label).strip().lower() not in GRADES:
        raise DataError(f"{where}: pair {pair.query_id}/{pair.item_id} has no known true grade "
                        f"(meta.true_label or label {label!r}; known: Exact/Substitute/Partial/Complement/Irrelevant)")
    return GRADES[str(label).strip().lower()]


def order_value(item_id: str) -> float:
    """A stable, item-specific order value (log-normal around ≈60) derived from the item id."""
    h = int.from_bytes(hashlib.blake2b(item_id.encode(), digest_size=8).digest(), "big")
    u = ((h >> 11) + 0.5) / float(1 << 53)
    return float(np.exp(4.0 + 0.6 * float(_norm_ppf(u))))


def _norm_ppf(u: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(u))


def build_queries(pairs: Sequence[Pair], source: str = "data", min_items: int = 2) -> list[QueryGroup]:
    """Group pairs by query; queries with fewer than ``min_items`` candidates cannot be ranked and are dropped."""
    groups: dict[str, list[Pair]] = {}
    for p in pairs:
        groups.setdefault(p.query_id, []).append(p)
    out = []
    for qid, items in groups.items():
        if len(items) < min_items:
            continue
        grades = np.array([true_grade(p, source) for p in items], dtype=np.int64)
        values = np.array([order_value(p.item_id) for p in items])
        out.append(QueryGroup(qid, items[0].query, items, grades, values))
    if not out:
        raise DataError(f"{source}: no query has {min_items} or more candidate items to rank")
    return out


@dataclass
class SimConfig:
    """Shape of the simulated traffic."""

    users_per_batch: int = 200
    """Users whose sessions are simulated (and then checked by the gate) per batch."""
    sessions_per_user: float = 2.0
    """Mean searches per user (1 + Poisson(mean − 1))."""
    shown: int = 10
    """Items shown per search (the top of the ranking)."""
    seed: int = 0
    """Seed of users, queries and behaviour."""
    click_model: ClickModel = field(default_factory=ClickModel)


@dataclass
class BatchPlan:
    """Who searches for what in one batch (before any arm has served it)."""

    batch: int
    user_ids: list[str]
    session_user: np.ndarray
    session_query: np.ndarray
    rng: np.random.Generator


def plan_batch(cfg: SimConfig, n_queries: int, batch: int) -> BatchPlan:
    """The batch's users (ids unique across batches), their number of searches and queries."""
    rng = np.random.default_rng([cfg.seed, batch])
    n = cfg.users_per_batch
    user_ids = [f"u{cfg.seed}-{batch * n + i}" for i in range(n)]
    n_sessions = 1 + rng.poisson(max(cfg.sessions_per_user - 1.0, 0.0), size=n)
    session_user = np.repeat(np.arange(n), n_sessions)
    session_query = rng.integers(0, n_queries, size=len(session_user))
    return BatchPlan(batch, user_ids, session_user, session_query, rng)


@dataclass
class Served:
    """How one search was served: the arm (sticky per user), the ranking, latency and failover."""

    arm: str
    order: Sequence[int]
    latency_ms: float = 0.0
    failed: bool = False
    request_id: str = ""


def simulate_clicks(grades: np.ndarray, values: np.ndarray, cm: ClickModel,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clicks, conversions and order values of ``S`` sessions over ``K`` shown positions.

    ``grades`` is ``[S, K]`` with −1 where fewer than ``K`` items were shown.
    """
    s, k = grades.shape
    click_p, conv_p, sat_p = (np.asarray(x) for x in (cm.click, cm.convert, cm.satisfied))
    u = rng.random((4, s, k))
    clicks = np.zeros((s, k), dtype=bool)
    convs = np.zeros((s, k), dtype=bool)
    alive = np.ones(s, dtype=bool)
    for j in range(k):
        g = grades[:, j]
        shown = g >= 0
        gi = np.clip(g, 0, 3)
        examined = alive & shown
        clicks[:, j] = examined & (u[0, :, j] < click_p[gi])
        convs[:, j] = clicks[:, j] & (u[1, :, j] < conv_p[gi])
        stop = clicks[:, j] & (u[2, :, j] < sat_p[gi])
        goes_on = np.where(clicks[:, j], ~stop, u[3, :, j] < cm.continue_prob)
        alive = examined & goes_on
    return clicks, convs, np.where(convs, values, 0.0)


def ndcg_at_k(shown_grades: np.ndarray, all_grades: np.ndarray, k: int) -> float:
    """NDCG@k of one shown list against the best possible ordering of the query's candidates."""
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    gains = (2.0 ** shown_grades[:k] - 1.0) @ disc[: len(shown_grades[:k])]
    ideal = np.sort(all_grades)[::-1][:k]
    best = (2.0 ** ideal - 1.0) @ disc[: len(ideal)]
    return float(gains / best) if best > 0 else 1.0


Event = dict[str, Any]


def observe(plan: BatchPlan, served: Sequence[Served], queries: Sequence[QueryGroup], cfg: SimConfig,
            events: Callable[[Event], None] | None = None) -> UserTable:
    """Simulate the users' behaviour on what was served; aggregate per user, emit events if asked."""
    k = cfg.shown
    n_s = len(plan.session_user)
    grades = -np.ones((n_s, k), dtype=np.int64)
    values = np.zeros((n_s, k))
    ideal = np.empty(n_s)
    orders = []
    for i, (qi, sv) in enumerate(zip(plan.session_query, served, strict=True)):
        q = queries[qi]
        order = np.asarray(sv.order, dtype=np.int64)[:k]
        orders.append(order)
        grades[i, : len(order)] = q.grades[order]
        values[i, : len(order)] = q.values[order]
        ideal[i] = _ideal_dcg(q, k)
    clicks, convs, gtv = simulate_clicks(grades, values, cfg.click_model, plan.rng)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (np.where(grades >= 0, 2.0 ** np.maximum(grades, 0) - 1.0, 0.0) @ disc)
    ndcg = np.where(ideal > 0, dcg / np.where(ideal > 0, ideal, 1.0), 1.0)
    n_u = len(plan.user_ids)
    per_session = {"sessions": np.ones(n_s), "shown": (grades >= 0).sum(1), "clicks": clicks.sum(1),
                   "conversions": convs.sum(1), "gtv": gtv.sum(1), "ndcg_sum": ndcg}
    data = {f: np.bincount(plan.session_user, weights=v, minlength=n_u).tolist() for f, v in per_session.items()}
    arms = [""] * n_u
    for i in range(n_s - 1, -1, -1):  # a user's arm is that of the first search (sticky anyway)
        arms[plan.session_user[i]] = served[i].arm
    if events is not None:
        for i, (u, qi) in enumerate(zip(plan.session_user, plan.session_query, strict=True)):
            q = queries[qi]
            shown = [q.items[j].item_id for j in orders[i]]
            _emit(events, plan.user_ids[u], served[i], q, shown, clicks[i], convs[i], gtv[i])
    return UserTable(list(plan.user_ids), arms, data)


def _ideal_dcg(q: QueryGroup, k: int) -> float:
    if k not in q.ideal_dcg:
        ideal = np.sort(q.grades)[::-1][:k]
        q.ideal_dcg[k] = float((2.0 ** ideal - 1.0) @ (1.0 / np.log2(np.arange(2, len(ideal) + 2))))
    return q.ideal_dcg[k]


def _emit(events: Callable[[Event], None], user: str, sv: Served, q: QueryGroup, shown: list[str],
          clicks: np.ndarray, convs: np.ndarray, gtv: np.ndarray) -> None:
    base = {"user_id": user, "arm": sv.arm, "request_id": sv.request_id, "query_id": q.query_id}
    events({**base, "event": "impression", "items": shown, "latency_ms": sv.latency_ms, "failed": sv.failed})
    for pos in np.flatnonzero(clicks):
        events({**base, "event": "click", "item_id": shown[pos], "position": int(pos) + 1})
        if convs[pos]:
            events({**base, "event": "conversion", "item_id": shown[pos], "position": int(pos) + 1,
                    "value": round(float(gtv[pos]), 2)})
