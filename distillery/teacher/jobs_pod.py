"""What every pod of a teacher training job runs: fetch the staged inputs, ``torchrun`` the step, return the model.

The manifest of :mod:`distillery.teacher.jobs` starts ``python -m distillery.teacher.jobs_pod`` with the arguments
of :func:`distillery.teacher.jobs.pod_args`.  On each node it

1. downloads its ``--input`` URIs (the step staged them under ``{staging}/inputs/``) to ``$SCRATCH/inputs/…``
   (each node has its own disk),
2. runs ``torchrun --nnodes N --nproc-per-node P --node-rank R --master-addr A --master-port M`` on the worker of
   :func:`distillery.teacher.distributed.worker_argv` (``--model-dir $SCRATCH/output/model --out-dir
   $SCRATCH/output/training``; R, A, M from the ``PET_*`` variables that Kubeflow Trainer and the Training
   Operator set, else ``RANK`` / ``MASTER_ADDR`` / ``MASTER_PORT``); its rank 0 writes the model and
   ``metrics.json``,
3. on node 0, uploads ``$SCRATCH/output`` to ``{staging}/output`` (with the checksum manifest the step verifies).

Try it on one machine (S3 through ``AWS_ENDPOINT_URL``; the inputs staged as the step does)::

    SCRATCH=/tmp/pod python -m distillery.teacher.jobs_pod --step sft --staging s3://runs/teacher-jobs/x \\
        --input data=synthetic:300 --input base=s3://runs/teacher-jobs/x/inputs/base --nnodes 1 \\
        --nproc-per-node 2 --config-json "$(cat config.json)"
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m distillery.teacher.jobs_pod", description=__doc__.split("\n")[0])
    p.add_argument("--step", required=True, choices=("dapt", "sft", "reward", "dpo"))
    p.add_argument("--staging", required=True, help="the job's s3:// prefix (inputs/ and output/ below it)")
    p.add_argument("--input", action="append", default=[], metavar="NAME=VALUE",
                   help="data, base or reward: an s3:// URI (downloaded here) or a value passed on (a data spec)")
    p.add_argument("--nnodes", type=int, required=True)
    p.add_argument("--nproc-per-node", type=int, required=True)
    p.add_argument("--config-json", required=True, help="the resolved config as JSON")
    return p.parse_args(argv)


def node_rank(env: Mapping[str, str]) -> int:
    return int(env.get("PET_NODE_RANK") or env.get("RANK") or 0)


def torchrun_command(args: argparse.Namespace, local: Mapping[str, str], config_file: Path, out: Path,
                     env: Mapping[str, str]) -> list[str]:
    """This node's ``torchrun`` command line (one node: ``--standalone``, no rendezvous host needed); the worker's
    arguments are :func:`distillery.teacher.distributed.worker_argv`'s, as for a local torchrun launch."""
    from distillery.teacher.distributed import torchrun_command as command
    from distillery.teacher.distributed import worker_argv

    master = env.get("PET_MASTER_ADDR") or env.get("MASTER_ADDR") or ""
    if args.nnodes > 1 and not master:
        raise SystemExit(f"--nnodes {args.nnodes}: neither PET_MASTER_ADDR nor MASTER_ADDR is set; the pods of a "
                         "multi-node job are started by Kubeflow Trainer or the Training Operator, which set them")
    argv = worker_argv(args.step, str(config_file), local["data"], str(out / "model"), out_dir=str(out / "training"),
                       base=local.get("base"), reward=local.get("reward"))
    return command(argv, args.nproc_per_node, args.nnodes, node_rank(env), master,
                   env.get("PET_MASTER_PORT") or env.get("MASTER_PORT") or "29500")


def stage_in(inputs: Sequence[str], scratch: Path) -> dict[str, str]:
    """``NAME=VALUE`` → what the worker reads: an ``s3://`` VALUE downloaded (checksums verified) to
    ``scratch/inputs/NAME``, any other VALUE as it is."""
    from distillery.storage import copy_tree, is_s3

    local = {}
    for item in inputs:
        name, sep, value = item.partition("=")
        if not sep or name not in ("data", "base", "reward"):
            raise SystemExit(f"--input {item!r}: expected data=…, base=… or reward=…")
        if is_s3(value):
            copy_tree(value, scratch / "inputs" / name, progress=True)
            value = str(scratch / "inputs" / name)
        local[name] = value
    return local


def stage_out(out: Path, staging: str) -> None:
    """Upload the trained model (and the step's metrics) for the pipeline step to fetch."""
    from distillery.storage import copy_tree

    if not (out / "training" / "metrics.json").exists():
        raise SystemExit(f"{out}/training: the training step wrote no metrics.json; nothing to hand back")
    for part in ("model", "training"):  # each with its own checksum manifest, which the step's download checks
        copy_tree(out / part, f"{staging}/output/{part}", progress=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from distillery.config import load_config

    values = json.loads(args.config_json)
    load_config(values.pop("profile", "demo"), overrides=values)  # a bad config fails here, before any download
    scratch = Path(os.environ.get("SCRATCH", "/scratch"))
    scratch.mkdir(parents=True, exist_ok=True)
    local = stage_in(args.input, scratch)
    if "data" not in local:
        raise SystemExit("--input data=…: the job names no data")
    config_file = scratch / "config.json"
    config_file.write_text(args.config_json, encoding="utf-8")
    out = scratch / "output"
    cmd = torchrun_command(args, local, config_file, out, os.environ)
    print("running:", " ".join(cmd), flush=True)
    rc = subprocess.call(cmd)
    if rc != 0:
        print(f"torchrun exited with {rc} on node {node_rank(os.environ)}", file=sys.stderr, flush=True)
        return rc
    if node_rank(os.environ) == 0:
        stage_out(out, args.staging)
    return 0


if __name__ == "__main__":
    sys.exit(main())
