"""Annotate stage: the teacher labels (with reasoning) one shard of the pairs ``annotate.split`` selects; the
merge checks the shard set and writes every record once.

The CLI (``distillery annotate`` / ``annotate merge``) and the pipeline's ``annotate_shard`` /
``merge_annotations`` components call :func:`annotate_shard` and :func:`merge`.

CPU commands (tiny teacher, seconds)::

    distillery annotate --teacher tiny --data synthetic:200 --shard 0 --num-shards 2 --out /tmp/ann --profile tiny
    distillery annotate merge --in /tmp/ann --out /tmp/ann/annotations.jsonl
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

from distillery.config import Config
from distillery.stages._io import write_metrics
from distillery.stages.data import DatasetLike, open_dataset
from distillery.stages.distill import ANNOTATIONS_FILE


def shard_indices(num_shards: int) -> list[int]:
    """``[0, 1, …, num_shards-1]``: the items of the annotation fan-out."""
    if num_shards < 1:
        raise ValueError(f"shards={num_shards}: at least one annotation shard is needed")
    return list(range(num_shards))


def annotate_shard(cfg: Config, teacher: str | None, data: DatasetLike, shard: int, num_shards: int,
                   out_dir: str | Path, *, metrics_dir: str | Path | None = None, checkpoint_uri: str = "",
                   checkpoint_key: str = "") -> dict[str, Any]:
    """Annotate shard ``shard`` of ``num_shards`` into ``out_dir`` (crash-safe: a rerun resumes) with ``teacher``
    (a name :func:`distillery.teacher.protocol.open_teacher` takes: a teacher directory, ``smollm2``, ``tiny``, a
    registered backend's ``PREFIX:…``; ``None``: the profile's base ``teacher.model``, zero-shot).

    Returns the shard's figures (with ``teacher_load_seconds``); they are also written as ``metrics.json`` to
    ``metrics_dir`` when given (shards of a CLI run share one directory, so it writes none).  With
    ``checkpoint_uri`` (``s3://``) the records are also checkpointed under it, by ``checkpoint_key``, and a
    restart in an empty ``out_dir`` resumes from there (:mod:`distillery.annotation.checkpoint`).
    """
    from distillery.annotation import annotate_shard as run_shard
    from distillery.annotation import select_pairs
    from distillery.annotation.checkpoint import open_checkpoint
    from distillery.teacher.protocol import open_teacher

    ds = open_dataset(data)
    pairs = select_pairs(ds.all_pairs() if cfg.annotate.split == "all" else ds.splits, cfg)
    model = teacher or cfg.teacher.model
    ckpt = open_checkpoint(checkpoint_uri, checkpoint_key, int(shard), int(num_shards))  # a bad URI fails first
    t0 = time.perf_counter()
    loaded = open_teacher(model, cfg)
    load_seconds = round(time.perf_counter() - t0, 1)
    result = run_shard(loaded, pairs, int(shard), int(num_shards), out_dir, cfg, data_name=ds.name, checkpoint=ckpt)
    metrics = {"teacher": model, "selected": len(pairs), "teacher_load_seconds": load_seconds,
               **dataclasses.asdict(result)}
    if metrics_dir is not None:
        write_metrics(metrics, metrics_dir)
    return metrics


def merge(in_dir: str | Path, out_file: str | Path) -> dict[str, Any]:
    """Check the shard set in ``in_dir`` and write every record, once, to ``out_file``; its report goes beside
    (``<out_file stem>.report.md`` and ``.report.json``).  Returns the merge figures."""
    from distillery.annotation import merge_shards

    return {"annotations": str(out_file), **dataclasses.asdict(merge_shards(in_dir, out_file))}


def merge_dirs(shard_dirs: list[str], out_dir: str | Path) -> dict[str, Any]:
    """The pipeline's merge: gather the shard files of every fan-out task into ``out_dir/shards`` and merge them
    into ``out_dir/annotations.jsonl``, with ``metrics.json`` and ``report.md``."""
    out = Path(out_dir)
    gathered = out / "shards"
    gathered.mkdir(parents=True, exist_ok=True)
    for d in shard_dirs:
        for f in Path(d).iterdir():
            if f.name.startswith("shard-"):
                shutil.copyfile(f, gathered / f.name)
    metrics = merge(gathered, out / ANNOTATIONS_FILE)
    write_metrics(metrics, out)
    shutil.copyfile(out / "annotations.report.md", out / "report.md")
    return metrics
