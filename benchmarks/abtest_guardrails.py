"""Guardrails and SRM: a better-ranking challenger that is slow, or failing, is rolled back; a forced
sample-ratio mismatch blocks the decision.

Latency and failure scenarios run real HTTP: simulated users → the splitter (aiohttp, loopback) with an
injected scoring backend whose challenger ranks by the true grades (so its metrics are better) but is
delayed or fails. The SRM scenario loses 20% of the challenger's users from the logs (a broken logger):

    nice -n 5 .venv/bin/python benchmarks/abtest_guardrails.py
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np

from distillery.abtest.arms import Router
from distillery.abtest.backends import FunctionBackend
from distillery.abtest.embedded import ThreadedSplitter
from distillery.abtest.experiment import ExperimentResult, InProcessArm, in_process_server, run_experiment
from distillery.abtest.gate import Gate
from distillery.abtest.httpsim import http_server, request_body
from distillery.abtest.local import two_arm_split
from distillery.abtest.protocol import Limits, parse_request
from distillery.abtest.rankers import OracleRanker, RandomRanker
from distillery.abtest.simulator import QueryGroup, SimConfig, build_queries
from distillery.abtest.splitter import SplitterState
from distillery.config import ABTestConfig, load_config
from distillery.data.synthetic import generate


def truth_backend(queries: list[QueryGroup], **faults: object) -> FunctionBackend:
    """Champion: random scores; challenger: the true grade (better), with injected faults."""
    truth: dict[tuple[str, str], float] = {}
    for q in queries:
        req = parse_request(json.dumps(request_body("u", q)).encode(), Limits())
        truth.update({(q.query, t): float(g) for t, g in zip(req.item_texts, q.grades, strict=True)})
    rng = np.random.default_rng(0)

    def score(arm, query, texts):  # type: ignore[no-untyped-def]
        if arm.name == "challenger":
            return [truth[(query, t)] for t in texts]
        return list(rng.random(len(texts)))

    return FunctionBackend(score, **faults)  # type: ignore[arg-type]


def over_http(queries: list[QueryGroup], cfg: ABTestConfig, users: int, **faults: object) -> ExperimentResult:
    split = two_arm_split((50, 50), 0.5)
    state = SplitterState(Router(split), truth_backend(queries, **faults))
    with ThreadedSplitter(state) as url:
        return run_experiment(queries, http_server(url, queries, 16), Gate(cfg, "champion", split.weights),
                              SimConfig(users_per_batch=cfg.users_per_batch, seed=3), users)


def in_process(queries: list[QueryGroup], cfg: ABTestConfig, users: int,
               lose: tuple[str, float] | None) -> ExperimentResult:
    split = two_arm_split((50, 50), 0.5)
    arms = {"champion": InProcessArm(RandomRanker()), "challenger": InProcessArm(OracleRanker())}
    serve = in_process_server(queries, Router(split), arms)
    return run_experiment(queries, serve, Gate(cfg, "champion", split.weights),
                          SimConfig(users_per_batch=cfg.users_per_batch, seed=3), users, lose=lose)


def row(name: str, res: ExperimentResult) -> str:
    d = res.decision
    g = d.guardrails["challenger"]
    first = next((i for i, x in enumerate(res.decisions) if x != "continue"), None)
    reason = d.reasons[0].replace("|", "/")
    return (f"| {name} | `{d.decision}`{' (blocked)' if d.blocked else ''} | {res.users} | "
            f"{'—' if first is None else first + 1} | {d.arms['champion'].get('p99_ms', 0):.1f} / "
            f"{d.arms['challenger'].get('p99_ms', 0):.1f} | {g['error_rate']:.1%} | {d.srm_p:.1e} | {reason} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=3000)
    p.add_argument("--delay-ms", type=float, default=40.0)
    p.add_argument("--fail-rate", type=float, default=0.05)
    args = p.parse_args()
    queries = build_queries(generate(2000, seed=5))
    cfg = dataclasses.replace(load_config("demo").abtest, min_users_per_arm=1000, min_requests=200,
                              users_per_batch=200)
    print(f"\n{len(queries)} queries; challenger ranks by the true grades (better CTR) in every scenario; "
          f"gate: min {cfg.min_users_per_arm} users/arm, p99 ratio ≤ {cfg.max_latency_ratio}, "
          f"errors ≤ {cfg.max_error_rate:.0%}, SRM p < {cfg.srm_alpha}\n")
    print("| scenario | decision | users | first decisive look | p99 ms champion / challenger | challenger errors "
          "| SRM p | first reason |")
    print("|---|---|---|---|---|---|---|---|")
    print(row("HTTP, no fault", over_http(queries, cfg, args.users)), flush=True)
    print(row(f"HTTP, challenger +{args.delay_ms:g} ms", over_http(queries, cfg, args.users,
                                                                 delay_ms={"challenger": args.delay_ms})), flush=True)
    print(row(f"HTTP, challenger fails {args.fail_rate:.0%} (failover)",
              over_http(queries, cfg, args.users, fail_rate={"challenger": args.fail_rate})), flush=True)
    print(row("in process, no loss", in_process(queries, cfg, args.users * 2, None)), flush=True)
    print(row("in process, 20% of challenger users lost", in_process(queries, cfg, args.users * 2,
                                                                      ("challenger", 0.2))), flush=True)


if __name__ == "__main__":
    main()
