"""``distillery export``: a saved student → ONNX (parity-gated) → a Triton model repository.

    distillery export --model /tmp/ft/model --data synthetic:200 --out /tmp/repo --profile tiny
    distillery export --model /tmp/ft2/model --data synthetic:200 --out /tmp/repo --version 2 --challenger
    distillery export --model runs/x/model --data esci:PATH --split test --out s3://models/relevance --int8
    distillery export --model runs/x/model --data esci:PATH --split test --out /tmp/repo --bf16
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from distillery.commands._common import (
    add_common,
    check_at_least,
    check_out_dir,
    check_student_dir,
    config_from_args,
)
from distillery.config import Config


def export_config(args: argparse.Namespace) -> Config:
    """Defaults → profile → YAML → ``--set`` → this command's flags."""
    variants = args.variants.split(",") if args.variants else None
    return config_from_args(args, {"export": {
        "variants": variants, "serve_with": args.serve_with, "int8": args.int8, "bf16": args.bf16, "fuse": args.fuse,
        "max_batch": args.max_batch, "queue_delay_us": args.queue_delay_us, "instances": args.instances,
        "threads": args.threads}})


def parity_texts(args: argparse.Namespace, cfg: Config) -> tuple[list[str], list[str]]:
    """The (query, item text) pairs of ``--data`` (or its held-out ``--split``) the gate runs on."""
    from distillery.data.spec import load
    from distillery.data.splits import split_pairs
    from distillery.export.repository import _student_meta

    pairs, _ = load(args.data, synthetic_noise=cfg.data.synthetic_noise)
    if args.split != "all":
        pairs = getattr(split_pairs(pairs, cfg.data), args.split)
    if args.limit:
        pairs = pairs[:args.limit]
    fields = _student_meta(Path(args.model)).get("item_fields") if not args.model.startswith("s3://") else None
    fields = fields or cfg.student.item_fields
    return [p.query for p in pairs], [p.item_text(fields) for p in pairs]


def run_export_cmd(args: argparse.Namespace) -> int:
    from distillery.export.parity import ParityError
    from distillery.export.repository import build_from_config
    from distillery.export.tensorrt import TrtProfile

    check_student_dir(args.model)
    check_at_least(args.version, 1, "--version")
    check_at_least(args.limit, 0, "--limit")
    check_out_dir(args.out)
    try:
        trt_profile = TrtProfile.parse(args.trt_batch, args.trt_seq)
    except ValueError:
        raise ValueError(f"--trt-batch {args.trt_batch!r} / --trt-seq {args.trt_seq!r}: expected MIN,OPT,MAX "
                         "integers, e.g. 1,8,64") from None
    cfg = export_config(args)
    ex = cfg.export
    queries, items = parity_texts(args, cfg)
    print(f"parity set: {len(queries)} pairs from {args.data} ({args.split})")
    try:
        manifest = build_from_config(args.model, args.out, args.version, ex, queries=queries, items=items,
                                     promote=not args.challenger, work_dir=args.work_dir,
                                     trt_profile=trt_profile)
    except ParityError as exc:
        print(f"distillery export: error: {exc}; nothing was written to {args.out}", file=sys.stderr)
        return 3
    entry = manifest["versions"][str(args.version)]
    for r in entry["parity"]:
        print(f"  {r['name']:<16} max |Δlogit| {r['max_abs_diff']:.2e}  agreement {100 * r['agreement']:.2f}%  "
              f"{'PASS' if r['passed'] else 'FAIL'}")
    for refusal in entry.get("refused") or []:
        print(f"  refused {refusal['precision']} ({refusal['graph']}): {refusal['reason']}; serving fp32")
    print(f"wrote version {args.version} ({entry['precision']}) to {args.out}; champion: v{manifest['champion']}"
          f"; report: export-report-v{args.version}.md")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a student to ONNX (parity-gated) and write a Triton repository")
    add_common(p)
    p.add_argument("--model", required=True, help="saved student directory (or s3:// URI)")
    p.add_argument("--data", required=True, help="data spec of pairs the parity gate runs on")
    p.add_argument("--split", choices=("all", "test", "val"), default="all",
                   help="use only this held-out split of --data (split by query with data.* settings)")
    p.add_argument("--limit", type=int, default=0, help="at most this many parity pairs (0: all)")
    p.add_argument("--out", required=True, help="repository directory or s3:// URI (extended if it exists)")
    p.add_argument("--version", type=int, default=1, help="version number of this student (default 1)")
    p.add_argument("--challenger", action="store_true", help="do not point the 'relevance' ensemble at it")
    p.add_argument("--int8", action="store_true", default=None, help="serve the int8 graph (export.int8)")
    p.add_argument("--bf16", action="store_true", default=None,
                   help="serve the graph on OpenVINO in bf16 on AMX/AVX512-BF16 CPUs (export.bf16)")
    p.add_argument("--no-fuse", dest="fuse", action="store_false", default=None,
                   help="skip onnxruntime's offline BERT fusions (export.fuse)")
    p.add_argument("--variants", help="student variants, e.g. python,onnxruntime,tensorrt (export.variants)")
    p.add_argument("--serve-with", help="variant the ensembles call (export.serve_with)")
    p.add_argument("--max-batch", type=int, help="export.max_batch")
    p.add_argument("--queue-delay-us", type=int, help="export.queue_delay_us")
    p.add_argument("--instances", type=int, help="CPU instances per model (export.instances)")
    p.add_argument("--threads", type=int, help="onnxruntime threads per student instance (export.threads)")
    p.add_argument("--trt-batch", default="1,8,64", help="TensorRT profile MIN,OPT,MAX batch")
    p.add_argument("--trt-seq", default="8,64,128", help="TensorRT profile MIN,OPT,MAX sequence length")
    p.add_argument("--work-dir", help="keep the ONNX files here (default: a temporary directory)")
    p.set_defaults(handler=run_export_cmd)
