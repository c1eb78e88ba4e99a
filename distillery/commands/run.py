"""``distillery run`` (the end-to-end pipeline on KFP's local runner) and ``distillery compile`` (IR YAML).

CPU command (tiny models, a few minutes): ``distillery run --profile tiny --out runs/tiny``
Main command (demo profile on the synthetic marketplace): ``distillery run``
Compile for a cluster: ``distillery compile --out compiled/``

The KFP adapters live in ``pipelines/`` (the only place, with ``components/``, that imports ``kfp``);
this module parses arguments and calls them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from distillery.commands._common import add_common, check_at_least, check_out_dir, config_from_args
from distillery.student import methods


def run_cmd(args: argparse.Namespace) -> int:
    from distillery.data.spec import parse_spec

    # Arguments and config first: a bad value fails at once, before KFP is imported or --out is made.
    check_at_least(args.shards, 1, "--shards")
    check_at_least(args.ab_users, 1, "--ab-users")
    check_at_least(args.teacher_eval_pairs, 0, "--teacher-eval-pairs")
    if args.data:
        parse_spec(args.data)  # the spec's syntax now; the file itself is read by the pipeline's first task
    if args.out:
        check_out_dir(args.out)
    cfg = config_from_args(args)

    from distillery.pipeline.progress import TaskLog, capture
    from distillery.pipeline.run import (
        DEFAULT_DATA,
        conditional_outputs,
        failure,
        finalize,
        pipeline_arguments,
        published_locations,
    )
    from pipelines.end_to_end import relevance_distillery
    from pipelines.local import run_local

    data = args.data or DEFAULT_DATA[cfg.profile]
    out = Path(args.out or f"runs/{cfg.profile}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    eval_pairs, fit = args.teacher_eval_pairs, None
    if cfg.profile == "demo" and not args.no_fit:
        from distillery.pipeline.budget import fit_to_machine

        cfg, eval_pairs, fit = fit_to_machine(cfg, eval_pairs)
        print(f"distillery run: {fit.lines()[3]}", file=sys.stderr)
    arguments = pipeline_arguments(cfg, data, champion=args.champion, publish=args.publish, shards=args.shards,
                                   method=args.method, ab_users=args.ab_users, teacher_eval_pairs=eval_pairs,
                                   serving_uri=args.serving_uri or str(out / "serving"))
    log_path = out / "pipeline.log"
    print(f"distillery run: profile {cfg.profile}, data {data}, output {out} (task output in {log_path})",
          file=sys.stderr)
    t0 = time.perf_counter()
    with log_path.open("w", encoding="utf-8") as log:
        sink = TaskLog(log, sys.stderr)
        try:
            with capture(sink):
                task = run_local(relevance_distillery, arguments, out / "pipeline_root", caching=not args.no_cache)
        except RuntimeError as exc:
            err = failure(exc, sink.events, log_path)
            print(f"distillery run: error: {err}", file=sys.stderr)
            return 1
    bundle = task.outputs["bundle"].path
    published = published_locations(bundle, args.publish) if args.publish else None
    metrics = finalize(bundle, out, sink.events, wall_seconds=time.perf_counter() - t0, published=published,
                       serving_uri=arguments["serving_uri"],
                       ab_dir=conditional_outputs(out / "pipeline_root", "ab-evaluation", "evaluation"),
                       machine_fit=fit)
    g = metrics["gate"]
    print(f"{'deploy' if g['deploy'] else 'do not deploy'}: {g['reason']} · report: {out / 'report.md'}")
    return 0


def compile_cmd(args: argparse.Namespace) -> int:
    from pipelines import compile_all

    for path in compile_all(args.out):
        print(f"wrote {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the end-to-end pipeline on KFP's local runner and write a report")
    add_common(p)
    p.add_argument("--data", help="data spec (default: the synthetic marketplace, sized by the profile)")
    p.add_argument("--out", help="output directory (default: runs/<profile>); a rerun reuses its cached tasks")
    p.add_argument("--champion", help="the serving model (directory or s3:// URI) the new student must match")
    p.add_argument("--publish", help="copy the student, annotations, teacher, model repository and report here "
                                     "(a directory or s3://bucket/prefix; credentials from the environment)")
    p.add_argument("--method", choices=methods.PIPELINE_NAMES, default="crsd",
                   help="how the student learns: crsd (default), hard/soft teacher labels, or human seed labels only")
    p.add_argument("--shards", type=int, default=2, help="annotation shards (run side by side, 2 at a time)")
    p.add_argument("--serving-uri", help="where a student that beats the champion is deployed (the Triton model "
                                         "repository Triton serves from; default: OUT/serving)")
    p.add_argument("--ab-users", type=int, default=2000, help="simulated users of the A/B test (with --champion)")
    p.add_argument("--teacher-eval-pairs", type=int, default=64,
                   help="held-out test pairs the teacher is evaluated on (0: all)")
    p.add_argument("--no-cache", action="store_true", help="run every task again")
    p.add_argument("--no-fit", action="store_true",
                   help="demo profile: keep the teacher's caps as configured instead of scaling them to this "
                        "machine's measured speed (distillery/pipeline/budget.py)")
    p.set_defaults(handler=run_cmd)

    p = sub.add_parser("compile", help="compile every KFP pipeline to IR YAML")
    p.add_argument("--out", required=True, help="directory for <pipeline>.yaml")
    p.set_defaults(handler=compile_cmd)
