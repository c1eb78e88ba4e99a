"""Run an experiment batch by batch: plan users, serve them (in process or over HTTP), simulate, gate.

The same loop drives the pure simulations (A/A, power, guardrail studies: thousands of users per
second) and the end-to-end run through the splitter and Triton; only ``serve`` differs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from distillery.abtest.arms import Router
from distillery.abtest.gate import ArmOps, Decision, Gate
from distillery.abtest.metrics import UserTable
from distillery.abtest.rankers import Ranker
from distillery.abtest.simulator import BatchPlan, Event, QueryGroup, Served, SimConfig, observe, plan_batch

ServeFn = Callable[[BatchPlan], list[Served]]


@dataclass
class InProcessArm:
    """An arm served without a server: a ranker, a latency model and a failure rate."""

    ranker: Ranker
    base_latency_ms: float = 5.0
    added_delay_ms: float = 0.0
    fail_rate: float = 0.0

    def latency(self, rng: np.random.Generator) -> float:
        # Log-normal service time with a heavy-ish tail, plus any injected delay.
        return float(self.base_latency_ms * rng.lognormal(0.0, 0.35)) + self.added_delay_ms


def in_process_server(queries: Sequence[QueryGroup], router: Router, arms: dict[str, InProcessArm]) -> ServeFn:
    """A ``serve`` function: sticky arm from the router, failures served by the champion."""
    champion = router.split.champion

    def serve(plan: BatchPlan) -> list[Served]:
        rng = np.random.default_rng([plan.batch, 7919])
        out = []
        user_arm = [router.assign(uid).name for uid in plan.user_ids]
        for u, qi in zip(plan.session_user, plan.session_query, strict=True):
            name = user_arm[u]
            arm = arms[name]
            failed = bool(arm.fail_rate and rng.random() < arm.fail_rate)
            ranker = arms[champion].ranker if failed else arm.ranker
            out.append(Served(name, ranker.order(queries[qi], rng).tolist(), arm.latency(rng), failed))
        return out

    return serve


@dataclass
class ExperimentResult:
    """The last decision, the users seen, the look at which the run stopped, and the gate's history."""

    decision: Decision
    users: int
    looks: int
    table: UserTable
    ops: dict[str, ArmOps]
    history: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)


def lose_events(table: UserTable, arm: str, share: float, seed: int) -> UserTable:
    """Drop ``share`` of one arm's users, as a broken logger or a redirect would (forces an SRM)."""
    rng = np.random.default_rng(seed)
    keep = [i for i, a in enumerate(table.arms) if a != arm or rng.random() >= share]
    out = UserTable([table.user_ids[i] for i in keep], [table.arms[i] for i in keep],
                    {k: [v[i] for i in keep] for k, v in table.data.items()})
    return out


def run_experiment(queries: Sequence[QueryGroup], serve: ServeFn, gate: Gate, sim: SimConfig, max_users: int, *,
                   stop_on_decision: bool = True, events: Callable[[Event], None] | None = None,
                   lose: tuple[str, float] | None = None, progress: bool = False) -> ExperimentResult:
    """Serve and simulate ``max_users`` users in batches, checking the gate after every batch."""
    table = UserTable()
    ops: dict[str, ArmOps] = {a: ArmOps() for a in gate.weights}
    n_batches = max(1, -(-max_users // sim.users_per_batch))
    decision: Decision | None = None
    decisions: list[str] = []
    bar = tqdm(range(n_batches), desc="A/B batches", disable=not progress, unit="batch")
    for b in bar:
        plan = plan_batch(sim, len(queries), b)
        served = serve(plan)
        for s in served:
            ops.setdefault(s.arm, ArmOps()).add(s.latency_ms, s.failed)
        batch_table = observe(plan, served, queries, sim, events)
        if lose is not None:
            batch_table = lose_events(batch_table, lose[0], lose[1], seed=sim.seed * 100003 + b)
        table.extend(batch_table)
        decision = gate.check(table, ops)
        decisions.append(decision.decision)
        bar.set_postfix(users=len(table), decision=decision.decision)
        if stop_on_decision and decision.decision != "continue":
            break
    assert decision is not None
    return ExperimentResult(decision, len(table), len(decisions), table, ops, gate.history, decisions)
