"""Power study: a truly better challenger is promoted, and how many users that takes.

Pairs of rankers on the same simulated users (pure simulator + gate, gate checked after every batch):
oracle vs random (the extreme), a noisy model vs a less noisy one (a realistic gap), and, with
``--pair CHAMPION_DIR,CHALLENGER_DIR`` (repeatable), saved models scored in process (e.g. the plain
fine-tuned baseline vs the CRSD student). Offline NDCG@10 of each ranker on the query set is printed beside.

    nice -n 5 .venv/bin/python benchmarks/abtest_power.py --runs 40
    nice -n 5 .venv/bin/python benchmarks/abtest_power.py --runs 40 --pair runs/ft/model,runs/crsd/model
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
from tqdm import tqdm

from distillery.abtest.arms import Router
from distillery.abtest.experiment import InProcessArm, in_process_server, run_experiment
from distillery.abtest.gate import Gate
from distillery.abtest.local import two_arm_split
from distillery.abtest.rankers import OracleRanker, RandomRanker, Ranker, model_ranker, noisy_oracle
from distillery.abtest.simulator import QueryGroup, SimConfig, build_queries, ndcg_at_k
from distillery.config import load_config
from distillery.data.spec import load


def offline_ndcg(ranker: Ranker, queries: list[QueryGroup], k: int = 10) -> float:
    rng = np.random.default_rng(0)
    return float(np.mean([ndcg_at_k(q.grades[ranker.order(q, rng)], q.grades, k) for q in queries]))


def study(name: str, champ: Ranker, chall: Ranker, queries: list[QueryGroup], runs: int, users: int,
          min_users: int) -> str:
    cfg = dataclasses.replace(load_config("demo").abtest, min_users_per_arm=min_users)
    outcomes, needed = [], []
    for r in tqdm(range(runs), desc=name, leave=False):
        split = two_arm_split((50, 50), 2.0, salt=f"power-{r}")
        serve = in_process_server(queries, Router(split), {"champion": InProcessArm(champ),
                                                           "challenger": InProcessArm(chall)})
        res = run_experiment(queries, serve, Gate(cfg, "champion", split.weights),
                             SimConfig(users_per_batch=200, seed=5000 + r), users)
        outcomes.append(res.decision.decision)
        if res.decision.decision == "promote":
            needed.append(res.users)
    promoted = outcomes.count("promote")
    med = f"{np.median(needed):.0f}" if needed else "—"
    p90 = f"{np.percentile(needed, 90):.0f}" if needed else "—"
    return (f"| {name} | {offline_ndcg(champ, queries):.3f} → {offline_ndcg(chall, queries):.3f} | "
            f"{promoted}/{runs} | {outcomes.count('rollback')}/{runs} | {med} | {p90} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=40)
    p.add_argument("--users", type=int, default=20000, help="horizon per experiment")
    p.add_argument("--min-users", type=int, default=1000)
    p.add_argument("--data", default="synthetic:3000,seed=11")
    p.add_argument("--pair", action="append", default=[], metavar="CHAMPION_DIR,CHALLENGER_DIR",
                   help="two saved models to compare (repeatable)")
    p.add_argument("--no-reference", action="store_true", help="skip the oracle/noisy reference pairs")
    args = p.parse_args()
    queries = build_queries(load(args.data)[0], args.data)
    pairs: list[tuple[str, Ranker, Ranker]] = [] if args.no_reference else [
        ("random → oracle", RandomRanker(), OracleRanker()),
        ("noisy model (σ=2) → better model (σ=0.7)", noisy_oracle(queries, 2.0, 1), noisy_oracle(queries, 0.7, 2)),
    ]
    for spec in args.pair:
        champ, chall = spec.split(",")
        pairs.append((f"`{champ}` → `{chall}`", model_ranker(champ, queries), model_ranker(chall, queries)))
    print(f"\n{args.runs} runs per pair, {len(queries)} queries of {args.data}, horizon {args.users} users, "
          f"minimum {args.min_users}/arm, gate checked every 200 users, 50/50\n")
    print("| champion → challenger | offline NDCG@10 | promoted | rolled back | users to promote (median) | (p90) |")
    print("|---|---|---|---|---|---|")
    for name, a, b in pairs:
        print(study(name, a, b, queries, args.runs, args.users, args.min_users), flush=True)


if __name__ == "__main__":
    main()
