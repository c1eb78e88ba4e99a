"""``distillery distill``: train the student from teacher annotations (CRSD or a baseline).

    distillery distill --annotations /tmp/ann/annotations.jsonl --data synthetic:200 --method crsd \
        --out /tmp/crsd --profile tiny
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distillery.commands._common import add_common, check_out_dir, cleaned_up_on_error, config_from_args
from distillery.data.schema import DataError

if TYPE_CHECKING:
    from distillery.data.schema import Pair


def _check_same_data(annotations: dict[tuple[str, str], Any], pairs: list[Pair], path: str, spec: str) -> None:
    """Annotations must be of pairs of ``--data`` (the file of another dataset would train on nothing)."""
    keys = {(p.query_id, p.item_id) for p in pairs}
    foreign = [k for k in annotations if k not in keys]
    if foreign:
        shown = ", ".join(f"{q}/{i}" for q, i in foreign[:3])
        raise DataError(f"--annotations {path}: {len(foreign)} of its {len(annotations)} records are not pairs of "
                        f"--data {spec} (e.g. {shown}); annotate this --data, or pass the data they were made from")


def run_distill_cmd(args: argparse.Namespace) -> int:
    from distillery.annotation import load_annotations
    from distillery.data.spec import load
    from distillery.evaluate import metrics_table
    from distillery.student.distill import run_distill

    check_out_dir(args.out)
    cfg = config_from_args(args, {"train": {"seed": args.seed}})
    pairs, report = load(args.data, synthetic_noise=cfg.data.synthetic_noise)
    if args.method in ("human", "human-all"):
        annotations = load_annotations(args.annotations) if args.annotations else {}
    elif not args.annotations:
        raise ValueError(f"distill --method {args.method}: --annotations is required")
    else:
        annotations = load_annotations(args.annotations)
    _check_same_data(annotations, pairs, args.annotations, args.data)
    print(f"loaded {report.rows_read} pairs from {report.source}; {len(annotations)} annotations")
    with cleaned_up_on_error(args.out, "model"):
        summary = run_distill(pairs, annotations, cfg, args.out, method=args.method, data_name=args.data,
                              variant=args.variant or "")
    print(metrics_table(summary["test"], f"{summary['variant']}: held-out test queries"))
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("distill", help="distil teacher annotations into the student (crsd|hard|soft|human)")
    add_common(p)
    p.add_argument("--annotations", help="merged annotations (distillery annotate merge); not needed for human*")
    p.add_argument("--data", required=True, help="data spec: the same pairs and split the annotations came from")
    p.add_argument("--method", choices=("crsd", "hard", "soft", "human", "human-all"), default="crsd")
    p.add_argument("--out", required=True, help="output directory (model/, metrics.json, report.md)")
    p.add_argument("--seed", type=int, help="training seed (train.seed)")
    p.add_argument("--variant", help="a name for this run in reports (e.g. crsd-no-align)")
    p.set_defaults(handler=run_distill_cmd)
