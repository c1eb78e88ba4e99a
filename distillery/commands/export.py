"""``distillery export``: a saved student → ONNX (parity-gated) → a Triton model repository.

    distillery export --model /tmp/ft/model --data synthetic:200 --out /tmp/repo --profile tiny
    distillery export --model /tmp/ft2/model --data synthetic:200 --out /tmp/repo --version 2 --challenger
    distillery export --model runs/x/model --data esci:PATH --split test --out s3://models/relevance --int8
    distillery export --model runs/x/model --data esci:PATH --split test --out /tmp/repo --bf16
"""

from __future__ import annotations

import argparse
import sys

from distillery.commands._common import (
    add_common,
    check_at_least,
    check_out_dir,
    check_student_dir,
    config_from_args,
)
from distillery.config import Config


def _profile(flag: str, text: str | None) -> list[int] | None:
    """``--trt-batch``/``--trt-seq`` as MIN,OPT,MAX integers (range rules: ``export.trt_*``)."""
    if text is None:
        return None
    try:
        values = [int(x) for x in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3:
        raise ValueError(f"{flag} {text!r}: expected MIN,OPT,MAX integers, e.g. "
                         f"{'1,8,64' if flag == '--trt-batch' else '1,64,128'}")
    return values


def export_config(args: argparse.Namespace) -> Config:
    """Defaults → profile → YAML → ``--set`` → this command's flags."""
    variants = args.variants.split(",") if args.variants else None
    return config_from_args(args, {"export": {
        "variants": variants, "serve_with": args.serve_with, "int8": args.int8, "bf16": args.bf16, "fuse": args.fuse,
        "max_batch": args.max_batch, "queue_delay_us": args.queue_delay_us, "instances": args.instances,
        "threads": args.threads, "trt_batch": _profile("--trt-batch", args.trt_batch),
        "trt_seq": _profile("--trt-seq", args.trt_seq)}})


def run_export_cmd(args: argparse.Namespace) -> int:
    from distillery.export.parity import ParityError
    from distillery.stages.data import Dataset
    from distillery.stages.export import export

    check_student_dir(args.model)
    check_at_least(args.version, 1, "--version")
    check_at_least(args.limit, 0, "--limit")
    check_out_dir(args.out)
    cfg = export_config(args)
    data, _ = Dataset.from_spec(args.data, cfg)
    try:
        m = export(cfg, args.model, data, args.out, split=args.split, limit=args.limit, version=args.version,
                   promote=not args.challenger, work_dir=args.work_dir)
    except ParityError as exc:
        print(f"distillery export: error: {exc}; nothing was written to {args.out}", file=sys.stderr)
        return 3
    print(f"parity set: {m['parity_pairs']} pairs from {args.data} ({args.split})")
    for r in m["parity"]:
        print(f"  {r['name']:<16} max |Δlogit| {r['max_abs_diff']:.2e}  agreement {100 * r['agreement']:.2f}%  "
              f"{'PASS' if r['passed'] else 'FAIL'}")
    for refusal in m["refused"] or []:
        print(f"  refused {refusal['precision']} ({refusal['graph']}): {refusal['reason']}; serving fp32")
    print(f"wrote version {args.version} ({m['precision']}) to {args.out}; champion: v{m['champion']}"
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
    p.add_argument("--trt-batch", help="TensorRT profile MIN,OPT,MAX batch (export.trt_batch, default 1,8,64)")
    p.add_argument("--trt-seq", help="TensorRT profile MIN,OPT,MAX sequence length (export.trt_seq, default 1,64,128)")
    p.add_argument("--work-dir", help="keep the ONNX files here (default: a temporary directory)")
    p.set_defaults(handler=run_export_cmd)
