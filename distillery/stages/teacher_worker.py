"""The teacher-training worker that torchrun starts in every process (locally, or in a cluster job's pods).

Each process joins the process group from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``…)
and runs :func:`distillery.stages.teacher.train` on its share of every batch; rank 0 writes the teacher,
``metrics.json`` and ``report.md``.  ``--config`` is the resolved config as JSON (a file, or the JSON text
itself, or a profile name); ``--data`` a prepared dataset directory or a data spec (split in every process
alike, by the seeded hash of the query ids).

CPU command (tiny profile, 2 processes, gloo)::

    python -m torch.distributed.run --standalone --nproc-per-node 2 -m distillery.stages.teacher_worker \\
        --step sft --config tiny --data synthetic:300 --model-dir /tmp/t/sft
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from distillery.config import Config
from distillery.stages._io import config_from_json
from distillery.stages.data import Dataset, DatasetLike
from distillery.stages.teacher import STEPS, train
from distillery.teacher import distributed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m distillery.stages.teacher_worker", description=__doc__.split("\n")[0])
    p.add_argument("--step", required=True, choices=list(STEPS))
    p.add_argument("--config", required=True, help="resolved config JSON (file or text) or a profile name")
    p.add_argument("--data", required=True, help="prepared dataset directory or data spec")
    p.add_argument("--model-dir", required=True, help="where rank 0 writes the teacher (or reward model)")
    p.add_argument("--out-dir", help="where rank 0 writes metrics.json and report.md (default: --model-dir)")
    p.add_argument("--base", help="teacher directory (or s3:// URI) to start from")
    p.add_argument("--reward", help="reward model directory (dpo)")
    return p.parse_args(argv)


def read_config(value: str) -> Config:
    """``--config``: a JSON file, JSON text or a profile name; JSON that does not parse is a one-line error naming
    the file (or saying it was the text itself)."""
    source = "--config text"
    if not value.lstrip().startswith("{") and Path(value).is_file():
        source, value = value, Path(value).read_text(encoding="utf-8")
    try:
        return config_from_json(value)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"{source}: not valid JSON ({exc})") from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = read_config(args.config)
    data: DatasetLike = args.data if Path(args.data).is_dir() else Dataset.from_spec(args.data, cfg)[0]
    try:
        train(args.step, cfg, data, args.model_dir, args.out_dir, base=args.base, reward_dir=args.reward)
    finally:
        distributed.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
