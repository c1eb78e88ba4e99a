"""``distillery distill``: train the student from teacher annotations (CRSD or a baseline).

    distillery distill --annotations /tmp/ann/annotations.jsonl --data synthetic:200 --method crsd \
        --out /tmp/crsd --profile tiny
"""

from __future__ import annotations

import argparse
from pathlib import Path

from distillery.commands._common import add_common, check_out_dir, cleaned_up_on_error, config_from_args
from distillery.student.methods import NAMES


def run_distill_cmd(args: argparse.Namespace) -> int:
    from distillery.evaluate import metrics_table
    from distillery.stages import distill
    from distillery.stages.data import Dataset

    check_out_dir(args.out)
    cfg = config_from_args(args, {"train": {"seed": args.seed}})
    data, report = Dataset.from_spec(args.data, cfg)
    print(f"loaded {report.rows_read} pairs from {report.source}")
    with cleaned_up_on_error(args.out, "model"):
        summary = distill.distill(cfg, data, args.annotations, args.out, method=args.method,
                                  variant=args.variant or "")
    print(metrics_table(summary["test"], f"{summary['variant']}: held-out test queries"))
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("distill", help=f"distil teacher annotations into the student ({'|'.join(NAMES)})")
    add_common(p)
    p.add_argument("--annotations", help="merged annotations (distillery annotate merge); not needed for human*")
    p.add_argument("--data", required=True, help="data spec: the same pairs and split the annotations came from")
    p.add_argument("--method", choices=NAMES, default="crsd")
    p.add_argument("--out", required=True, help="output directory (model/, metrics.json, report.md)")
    p.add_argument("--seed", type=int, help="training seed (train.seed)")
    p.add_argument("--variant", help="a name for this run in reports (e.g. crsd-no-align)")
    p.set_defaults(handler=run_distill_cmd)
