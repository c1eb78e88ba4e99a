"""The ``distillery`` command: thin adapters that parse arguments and call the library.

Every subcommand takes ``--profile`` (tiny|demo|full), ``--config FILE.yaml`` and repeated
``--set SECTION.FIELD=VALUE``; precedence is defaults → profile → YAML → ``--set`` → dedicated flags.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distillery.config import PROFILES, Config, ConfigError, load_config, parse_overrides
from distillery.data.schema import DataError

Handler = Callable[[argparse.Namespace], int]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", choices=PROFILES, default="demo", help="size profile (default: demo)")
    p.add_argument("--config", help="YAML file of config sections overriding the profile")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override one config field (repeatable)")


def config_from_args(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> Config:
    overrides = parse_overrides(args.set)
    for section, values in (extra or {}).items():
        overrides.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
    return load_config(args.profile, args.config, overrides)


def cmd_finetune(args: argparse.Namespace) -> int:
    from distillery.data.spec import load
    from distillery.evaluate import metrics_table
    from distillery.student.finetune import run_finetune

    cfg = config_from_args(args, {"train": {"seed": args.seed}})
    pairs, report = load(args.data, synthetic_noise=cfg.data.synthetic_noise)
    print(f"loaded {report.rows_read} pairs from {report.source}"
          + (f" (skipped by rule: {report.skipped})" if report.skipped else ""))
    summary = run_finetune(pairs, cfg, args.out, method=args.method, seed_only=args.seed_only,
                           data_name=args.data)
    print(metrics_table(summary["test"], f"{args.method}: held-out test queries"))
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from distillery.data.schema import get_label_set, label_indices
    from distillery.data.spec import load
    from distillery.evaluate import compute_metrics, metrics_table, save_confusion_png, write_json
    from distillery.student.predictor import Classifier

    cfg = config_from_args(args)
    clf = Classifier(args.model, batch_size=cfg.train.eval_batch_size)
    label_set = get_label_set(clf.meta.label_set)
    pairs, _ = load(args.data, synthetic_noise=cfg.data.synthetic_noise)
    y = label_indices(pairs, label_set, args.data)
    probs = clf.predict_proba(pairs, progress=True)
    metrics = compute_metrics(y, probs.argmax(axis=1), label_set.classes, probs)
    metrics.update(model=str(args.model), data=args.data)
    write_json(metrics, args.out)
    png = Path(args.out).with_suffix(".png")
    save_confusion_png(metrics, png, f"{Path(args.model).name} on {args.data}")
    print(metrics_table(metrics, f"{args.model} on {args.data}"))
    print(f"wrote {args.out} and {png}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distillery", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("finetune", help="fine-tune the student (or fit the lexical floor) on human labels")
    _common(p)
    p.add_argument("--data", required=True, help="data spec, e.g. esci:PATH or synthetic:3000")
    p.add_argument("--out", required=True, help="output directory (model/, metrics.json, report.md)")
    p.add_argument("--seed", type=int, help="training seed (train.seed)")
    p.add_argument("--seed-only", action="store_true",
                   help="train on the human-labelled seed share alone (the distillation baseline)")
    p.add_argument("--method", choices=("bert", "lexical"), default="bert")
    p.set_defaults(handler=cmd_finetune)

    p = sub.add_parser("evaluate", help="evaluate a saved model on every row of a data spec")
    _common(p)
    p.add_argument("--model", required=True, help="a model directory written by finetune or distill")
    p.add_argument("--data", required=True, help="data spec of labelled pairs")
    p.add_argument("--out", required=True, help="metrics JSON path (a PNG confusion matrix is written beside)")
    p.set_defaults(handler=cmd_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except (ConfigError, DataError, FileNotFoundError, ValueError) as exc:
        print(f"distillery {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
