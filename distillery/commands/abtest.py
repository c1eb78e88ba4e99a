"""``distillery abtest``: champion vs challenger through Triton, the splitter, simulated users and the gate.

    distillery abtest --champion runs/ft/model --challenger runs/crsd/model --data synthetic:3000 \
        --users 4000 --weights 50,50 --out runs/ab --profile tiny
    distillery abtest --in-process --champion random --challenger oracle --data synthetic:3000 \
        --users 4000 --out /tmp/ab

``--in-process`` scores with the students in this process (no Triton, no HTTP) and also accepts the
reference rankers ``oracle``, ``random`` and ``worst`` as arms. Writes ``decision.json``, ``report.md``,
``lift.png``, ``arms.png``; through Triton also ``exposures.jsonl``, ``events.jsonl``, ``splitter_metrics.prom``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from distillery.commands._common import (
    add_common,
    check_at_least,
    check_out_dir,
    check_student_dir,
    config_from_args,
)


def _weights(text: str) -> tuple[float, float]:
    try:
        a, b = (float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"--weights {text!r}: expected CHAMPION,CHALLENGER percentages, e.g. 50,50") from None
    if not (0 <= a <= 100 and 0 <= b <= 100) or abs(a + b - 100) > 1e-9:
        raise ValueError(f"--weights {text!r}: two percentages in [0, 100] that sum to 100, e.g. 50,50")
    return a, b


def run_abtest_cmd(args: argparse.Namespace) -> int:
    from distillery.stages.abtest import REFERENCE_RANKERS, abtest
    from distillery.stages.data import Dataset

    weights = _weights(args.weights)
    check_at_least(args.users, 1, "--users")
    check_out_dir(args.out)
    if not args.in_process and {args.champion, args.challenger} & set(REFERENCE_RANKERS):
        raise ValueError("oracle/random/worst exist only with --in-process; give model directories for Triton")
    for flag, arm in (("--champion", args.champion), ("--challenger", args.challenger)):
        if arm not in REFERENCE_RANKERS:
            check_student_dir(arm, flag)
    cfg = config_from_args(args, {"abtest": {"seed": args.seed}})
    data, report = Dataset.from_spec(args.data, cfg)
    print(f"loaded {report.rows_read} pairs from {report.source}")
    m = abtest(cfg, args.champion, args.challenger, data, args.out, users=args.users, split="all", weights=weights,
               in_process=args.in_process, added_delay_ms=args.added_delay_ms, context={"data": args.data})
    print(json.dumps({**m, "srm_p": round(m["srm_p"], 6)}, indent=2))
    print(f"report: {Path(args.out) / 'report.md'}  decision: {Path(args.out) / 'decision.json'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("abtest", help="online A/B test of two students with simulated users and a promotion gate")
    add_common(p)
    p.add_argument("--champion", required=True,
                   help="model directory serving today (or oracle|random|worst with --in-process)")
    p.add_argument("--challenger", required=True, help="model directory to evaluate (or oracle|random|worst)")
    p.add_argument("--data", required=True, help="data spec with true grades, e.g. synthetic:3000 or esci:PATH")
    p.add_argument("--users", type=int, default=4000, help="simulated users at most (the gate may stop sooner)")
    p.add_argument("--weights", default="50,50", help="champion,challenger traffic percentages (sum 100)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, help="seed of the simulated users (abtest.seed)")
    p.add_argument("--in-process", action="store_true", help="score in this process instead of Triton + splitter")
    p.add_argument("--added-delay-ms", type=float, default=0.0,
                   help="(--in-process) latency added to the challenger, to exercise the latency guardrail")
    p.set_defaults(handler=run_abtest_cmd)
