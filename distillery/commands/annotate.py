"""``distillery annotate`` (one shard of teacher annotation) and ``distillery annotate merge``.

    distillery annotate --teacher tiny --data synthetic:200 --shard 0 --num-shards 2 --out /tmp/ann --profile tiny
    distillery annotate merge --in /tmp/ann --out /tmp/ann/annotations.jsonl
"""

from __future__ import annotations

import argparse
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
    from distillery.stages.annotate import annotate_shard
    from distillery.stages.data import Dataset

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
    data, report = Dataset.from_spec(args.data, cfg)
    print(f"loaded {report.rows_read} pairs from {report.source} ({cfg.annotate.split} to annotate); "
          f"shard {args.shard} of {args.num_shards}", flush=True)
    m = annotate_shard(cfg, args.teacher, data, args.shard, args.num_shards, args.out)
    rate = m["written"] / m["seconds"] if m["seconds"] > 0 else 0.0
    print(f"teacher {args.teacher} loaded in {m['teacher_load_seconds']:.1f} s; {m['selected']} pairs selected")
    print(f"shard {m['shard']}/{m['num_shards']}: {m['total']} pairs, {m['already_done']} already done"
          + (f" (half-written line {m['torn_line_redone']} redone)" if m["torn_line_redone"] else "")
          + f", {m['written']} written in {m['seconds']:.1f} s ({rate:.2f} pairs/s, "
          f"{m['generated_tokens'] / max(m['seconds'], 1e-9):.1f} generated tokens/s) → {m['path']}")
    engine = m.get("engine") or {}
    if engine:
        print(f"engine: {engine['engine_requests']:.0f} requests ({engine['engine_label_reads']:.0f} label reads, "
              f"{engine['engine_retried']:.0f} retried) in "
              f"{engine['engine_seconds']:.1f} s: {engine['requests_per_second']:.2f} requests/s, "
              f"{engine['engine_tokens_per_second']:.1f} tokens/s")
    return 0


def _merge(args: argparse.Namespace) -> int:
    from distillery.stages.annotate import merge

    if not args.in_dir or not args.out:
        raise ValueError("annotate merge: --in and --out are required")
    if not Path(args.in_dir).is_dir():
        raise FileNotFoundError(f"--in {args.in_dir}: no such directory of shard files")
    check_out_file(args.out)
    merge(args.in_dir, args.out)
    print(Path(args.out).with_suffix(".report.md").read_text(encoding="utf-8"))
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
    p.add_argument("--teacher", help="teacher model: a teacher directory, 'smollm2', 'tiny', or an engine: "
                                      "openai:URL,model=NAME[,key=value…] or vllm:MODEL")
    p.add_argument("--data", help="data spec of the pairs (annotate.split picks logs/train/all of it)")
    p.add_argument("--shard", type=int, default=0, help="this shard's index (0-based)")
    p.add_argument("--num-shards", type=int, default=1, help="number of shards")
    p.add_argument("--batch-size", type=int, help="teacher batch size (annotate.batch_size)")
    p.add_argument("--in", dest="in_dir", help="merge: the directory of shard files")
    p.add_argument("--out", help="annotate: shard directory; merge: the merged JSONL file")
    p.set_defaults(handler=run_annotate_cmd)
