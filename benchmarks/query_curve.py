"""How many labelled queries a learner needs: the lexical floor trained on the seed queries plus m log queries.

The ESCI protocol's seed set is the human labels of 13 training queries; a teacher that learns its judgement from
them can only be as good as 13 queries teach.  This script measures that with the cheapest learner (the lexical
floor: BM25 + overlap per field, class-balanced logistic regression): for each draw it holds out ``--eval-queries``
log queries, trains on the seed pairs plus the human labels of the first m of the other log queries, and scores
macro-F1 on the held-out ones.  Mean ± sd over ``--draws`` random orders of the log queries; the test split is
never read.

    .venv/bin/python benchmarks/query_curve.py --data esci:../shared/data/esci-us/esci_us_dev.tsv.gz
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from sklearn.metrics import f1_score  # noqa: E402

from distillery.config import load_config, parse_overrides  # noqa: E402
from distillery.data.schema import get_label_set, label_indices  # noqa: E402
from distillery.data.spec import load_pairs  # noqa: E402
from distillery.data.splits import split_pairs  # noqa: E402
from distillery.student.lexical import LexicalModel  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--eval-queries", type=int, default=20, help="log queries held out per draw")
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--steps", default="0,8,16,24,33", help="comma-separated m: log queries added to the seed")
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    cfg = load_config(args.profile, overrides=parse_overrides(args.set))
    splits = split_pairs(load_pairs(args.data), cfg.data)
    ls = get_label_set(cfg.data.label_set)
    log_queries = sorted({p.query_id for p in splits.logs})
    steps = [int(m) for m in args.steps.split(",")]
    if len(log_queries) < args.eval_queries + max(steps):
        raise SystemExit(f"{args.data}: {len(log_queries)} log queries, fewer than --eval-queries {args.eval_queries}"
                         f" + the largest step {max(steps)}")
    seed_queries = len({p.query_id for p in splits.seed})
    scores: dict[int, list[float]] = {m: [] for m in steps}
    for draw in range(args.draws):
        order = log_queries[:]
        random.Random(draw).shuffle(order)
        held = set(order[: args.eval_queries])
        pool = order[args.eval_queries:]
        eval_pairs = [p for p in splits.logs if p.query_id in held]
        truth = label_indices(eval_pairs, ls, "held-out log pairs")
        for m in steps:
            added = set(pool[:m])
            train = splits.seed + [p for p in splits.logs if p.query_id in added]
            model = LexicalModel(cfg.lexical, list(ls.classes)).fit(train, ls)
            scores[m].append(f1_score(truth, model.predict_proba(eval_pairs).argmax(-1), average="macro",
                                      labels=list(range(ls.num_classes)), zero_division=0))
    print(f"| labelled queries (seed {seed_queries} + log) | macro-F1 on {args.eval_queries} held-out log queries, "
          f"mean ± sd over {args.draws} draws |")
    print("|---|---|")
    for m in steps:
        sd = statistics.stdev(scores[m]) if len(scores[m]) > 1 else 0.0
        print(f"| {seed_queries + m} | {statistics.mean(scores[m]):.3f} ± {sd:.3f} |")


if __name__ == "__main__":
    main()
