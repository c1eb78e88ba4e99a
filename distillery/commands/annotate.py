"""``distillery annotate`` (one shard of teacher annotation) and ``distillery annotate merge``.

    distillery annotate --teacher tiny --data synthetic:200 --shard 0 --num-shards 2 --out /tmp/ann --profile tiny
    distillery annotate merge --in /tmp/ann --out /tmp/ann/annotations.jsonl
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from distillery.commands._common import (
    add_common,
    check_at_least,
    check_out_dir,
    check_out_file,
    check_teacher,
    config_from_args,
)


def _run_shard(args: argparse.Namespace) -> int:
    from distillery.annotation import annotate_shard, select_pairs
    from distillery.data.spec import load

    for flag, value in (("--teacher", args.teacher), ("--data", args.data), ("--out", args.out)):
        if not value:
            raise ValueError(f"annotate: {flag} is required")
    check_at_least(args.num_shards, 1, "--num-shards")
    if not 0 <= args.shard < args.num_shards:
        raise ValueError(f"--shard {args.shard}: must be in [0, {args.num_shards - 1}] for "
                         f"--num-shards {args.num_shards}")
    check_teacher(args.teacher)
    check_out_dir(args.out)
    cfg = config_from_args(args, {"annotate": {"batch_size": args.batch_size}})
    pairs, report = load(args.data, synthetic_noise=cfg.data.synthetic_noise)
    selected = select_pairs(pairs, cfg)
    print(f"loaded {report.rows_read} pairs from {report.source}; {len(selected)} to annotate "
          f"({cfg.annotate.split}); shard {args.shard} of {args.num_shards}", flush=True)
    from distillery.teacher.inference import load_teacher

    t0 = time.perf_counter()
    teacher = load_teacher(args.teacher, cfg)
    print(f"teacher {args.teacher} loaded in {time.perf_counter() - t0:.1f} s", flush=True)
    r = annotate_shard(teacher, selected, args.shard, args.num_shards, args.out, cfg, data_name=args.data)
    rate = r.written / r.seconds if r.seconds > 0 else 0.0
    print(f"shard {r.shard}/{r.num_shards}: {r.total} pairs, {r.already_done} already done"
          + (f" (half-written line {r.torn_line_redone} redone)" if r.torn_line_redone else "")
          + f", {r.written} written in {r.seconds:.1f} s ({rate:.2f} pairs/s, "
          f"{r.generated_tokens / max(r.seconds, 1e-9):.1f} generated tokens/s) → {r.path}")
    return 0


def _merge(args: argparse.Namespace) -> int:
    from distillery.annotation import merge_shards

    if not args.in_dir or not args.out:
        raise ValueError("annotate merge: --in and --out are required")
    if not Path(args.in_dir).is_dir():
        raise FileNotFoundError(f"--in {args.in_dir}: no such directory of shard files")
    check_out_file(args.out)
    report = merge_shards(args.in_dir, args.out)
    print(report.to_markdown())
    print(f"wrote {args.out}")
    return 0


def run_annotate_cmd(args: argparse.Namespace) -> int:
    return _merge(args) if args.action == "merge" else _run_shard(args)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("annotate", help="annotate one shard of log pairs with the teacher; 'merge' joins shards",
                       description="distillery annotate --teacher DIR --data SPEC --shard I --num-shards N --out DIR"
                                   " | distillery annotate merge --in DIR --out FILE.jsonl")
    add_common(p)
    p.add_argument("action", nargs="?", choices=("run", "merge"), default="run",
                   help="'merge' checks and joins the shards of --in into --out (default: annotate a shard)")
    p.add_argument("--teacher", help="teacher model: a teacher directory, 'smollm2' or 'tiny'")
    p.add_argument("--data", help="data spec of the pairs (annotate.split picks logs/train/all of it)")
    p.add_argument("--shard", type=int, default=0, help="this shard's index (0-based)")
    p.add_argument("--num-shards", type=int, default=1, help="number of shards")
    p.add_argument("--batch-size", type=int, help="teacher batch size (annotate.batch_size)")
    p.add_argument("--in", dest="in_dir", help="merge: the directory of shard files")
    p.add_argument("--out", help="annotate: shard directory; merge: the merged JSONL file")
    p.set_defaults(handler=run_annotate_cmd)
