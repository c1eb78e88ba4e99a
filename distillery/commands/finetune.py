"""``distillery finetune`` and ``distillery evaluate``: the baseline student and its evaluation."""

from __future__ import annotations

import argparse
from pathlib import Path

from distillery.commands._common import (
    add_common,
    check_out_dir,
    check_out_file,
    check_student_dir,
    cleaned_up_on_error,
    config_from_args,
)


def run_finetune_cmd(args: argparse.Namespace) -> int:
    check_out_dir(args.out)
    cfg = config_from_args(args, {"train": {"seed": args.seed}})
    from distillery.evaluate import metrics_table
    from distillery.stages import finetune
    from distillery.stages.data import Dataset

    data, report = Dataset.from_spec(args.data, cfg)
    print(f"loaded {report.rows_read} pairs from {report.source}"
          + (f" (skipped by rule: {report.skipped})" if report.skipped else ""))
    with cleaned_up_on_error(args.out, "model"):
        summary = finetune.finetune(cfg, data, args.out, method=args.method, seed_only=args.seed_only)
    print(metrics_table(summary["test"], f"{args.method}: held-out test queries"))
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def run_evaluate_cmd(args: argparse.Namespace) -> int:
    from distillery.evaluate import metrics_table
    from distillery.stages.evaluate import evaluate_spec

    check_student_dir(args.model)
    check_out_file(args.out)
    metrics = evaluate_spec(config_from_args(args), args.model, args.data, args.out)
    print(metrics_table(metrics, f"{args.model} on {args.data}"))
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.png')}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune the student (or fit the lexical floor) on human labels")
    add_common(p)
    p.add_argument("--data", required=True, help="data spec, e.g. esci:PATH or synthetic:3000")
    p.add_argument("--out", required=True, help="output directory (model/, metrics.json, report.md)")
    p.add_argument("--seed", type=int, help="training seed (train.seed)")
    p.add_argument("--seed-only", action="store_true",
                   help="train on the human-labelled seed share alone (the distillation baseline)")
    p.add_argument("--method", choices=("bert", "lexical"), default="bert")
    p.set_defaults(handler=run_finetune_cmd)

    p = sub.add_parser("evaluate", help="evaluate a saved model on every row of a data spec")
    add_common(p)
    p.add_argument("--model", required=True, help="a model directory written by finetune or distill")
    p.add_argument("--data", required=True, help="data spec of labelled pairs")
    p.add_argument("--out", required=True, help="metrics JSON path (a PNG confusion matrix is written beside)")
    p.set_defaults(handler=run_evaluate_cmd)
