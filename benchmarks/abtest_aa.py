"""A/A study: how often does the gate promote a challenger identical to the champion?

Each experiment draws new users (seed) and a new salt; both arms serve the *same* ranker; the gate is
checked after every batch. Reported: the gate's false-promotion rate (first decision = promote) with
its 95% Wilson interval, and the same experiments judged by a naive fixed-horizon z-test re-checked
after every batch (promote at the first look with p < α and a positive lift), which is the inflation
that always-valid inference avoids. Pure simulator + gate (no HTTP), a few minutes on 2 cores:

    nice -n 5 .venv/bin/python benchmarks/abtest_aa.py --experiments 200 --users 8000
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
from tqdm import tqdm

from distillery.abtest.arms import Router, SplitConfig, split_from_dict
from distillery.abtest.experiment import InProcessArm, in_process_server, run_experiment
from distillery.abtest.gate import Gate
from distillery.abtest.rankers import ScoreRanker
from distillery.abtest.simulator import QueryGroup, SimConfig, build_queries
from distillery.abtest.stats import wilson_interval
from distillery.config import load_config
from distillery.data.synthetic import generate


def noisy_ranker(queries: list[QueryGroup], noise: float, seed: int) -> ScoreRanker:
    """A fixed, imperfect model: true grade plus item-level noise (same for both arms in an A/A)."""
    rng = np.random.default_rng(seed)
    return ScoreRanker({q.query_id: q.grades + rng.normal(0, noise, len(q.grades)) for q in queries})


def split(i: int, weights: tuple[float, float]) -> SplitConfig:
    return split_from_dict({"experiment": "aa", "salt": f"aa-{i}", "champion": "A", "arms": [
        {"name": "A", "model": "m", "weight": weights[0]}, {"name": "B", "model": "m", "weight": weights[1]}]})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiments", type=int, default=200)
    p.add_argument("--users", type=int, default=8000, help="users per experiment (the horizon)")
    p.add_argument("--batch", type=int, default=200, help="users per batch = between two looks")
    p.add_argument("--min-users", type=int, default=200, help="gate minimum per arm before any decision")
    p.add_argument("--metric", default="ctr")
    p.add_argument("--weights", default="50,50")
    args = p.parse_args()
    w = tuple(float(x) for x in args.weights.split(","))
    cfg = dataclasses.replace(load_config("demo").abtest, min_users_per_arm=args.min_users, primary_metric=args.metric,
                              guardrail_metrics=[])
    queries = build_queries(generate(3000, seed=11))
    ranker = noisy_ranker(queries, 1.0, 0)
    gate_promote = gate_any = naive_promote = naive_any = 0
    looks = []
    t0 = time.time()
    for i in tqdm(range(args.experiments), desc="A/A experiments"):
        sp = split(i, (w[0], w[1]))
        gate = Gate(cfg, "A", sp.weights)
        serve = in_process_server(queries, Router(sp), {"A": InProcessArm(ranker), "B": InProcessArm(ranker)})
        res = run_experiment(queries, serve, gate, SimConfig(users_per_batch=args.batch, seed=1000 + i), args.users,
                             stop_on_decision=False)
        first = next((d for d in res.decisions if d != "continue"), "continue")
        gate_promote += first == "promote"
        gate_any += first != "continue"
        rows = [h for h in res.history if h["metric"] == args.metric and h["monitoring"]]
        naive_hits = [h for h in rows if h["p_naive_z"] < cfg.alpha]
        naive_any += bool(naive_hits)
        naive_promote += bool(naive_hits) and naive_hits[0]["diff"] > 0
        looks.append(len(rows))
    n = args.experiments
    print(f"\nA/A: {n} experiments × {args.users} users, batches of {args.batch}, {np.mean(looks):.0f} looks each "
          f"after the minimum of {args.min_users}/arm, alpha={cfg.alpha}, metric={args.metric}, "
          f"weights {args.weights}  ({time.time() - t0:.0f} s)\n")
    print("| test, checked after every batch | false promotions | rate | 95% CI | any false decision (either sign) |")
    print("|---|---|---|---|---|")
    for name, k, anyk in (("mSPRT gate (always-valid)", gate_promote, gate_any),
                          ("naive fixed-horizon z-test", naive_promote, naive_any)):
        lo, hi = wilson_interval(k, n)
        print(f"| {name} | {k}/{n} | {k / n:.3f} | [{lo:.3f}, {hi:.3f}] | {anyk}/{n} = {anyk / n:.3f} |")


if __name__ == "__main__":
    main()
