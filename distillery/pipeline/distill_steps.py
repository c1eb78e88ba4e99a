"""Pipeline steps of stage 2: one annotation shard, the merge of the shards, distillation into the student.

Like :mod:`distillery.pipeline.steps`: plain paths in, files and a metrics dict out, no ``kfp``.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from distillery.pipeline.steps import PAIRS_FILE, config_from_json, move_model, read_pairs, write_metrics

ANNOTATIONS_FILE = "annotations.jsonl"


def shard_indices(num_shards: int) -> list[int]:
    """``[0, 1, …, num_shards-1]``: the items of the annotation fan-out."""
    if num_shards < 1:
        raise ValueError(f"shards={num_shards}: at least one annotation shard is needed")
    return list(range(num_shards))


def annotate_shard(dataset_dir: str | Path, config_json: str, shard: int, num_shards: int, out_dir: str | Path,
                   teacher: str | None = None) -> dict[str, Any]:
    """Annotate this shard's share of the pairs ``annotate.split`` selects, with ``teacher`` (a teacher
    directory) or, without one, the profile's base teacher ``teacher.model`` (zero-shot)."""
    from distillery.annotation import annotate_shard as run_shard
    from distillery.annotation import select_pairs
    from distillery.teacher.inference import load_teacher

    cfg = config_from_json(config_json)
    pairs = select_pairs(read_pairs(Path(dataset_dir) / PAIRS_FILE), cfg)
    model = teacher or cfg.teacher.model
    result = run_shard(load_teacher(model, cfg), pairs, int(shard), int(num_shards), out_dir, cfg,
                       data_name=str(Path(dataset_dir) / PAIRS_FILE))
    metrics = {"teacher": model, **dataclasses.asdict(result)}
    write_metrics(metrics, out_dir)
    return metrics


def merge_annotations(shard_dirs: list[str], out_dir: str | Path) -> dict[str, Any]:
    """Gather the shard files of every fan-out task and merge them (each pair exactly once)."""
    from distillery.annotation import merge_shards

    out = Path(out_dir)
    gathered = out / "shards"
    gathered.mkdir(parents=True, exist_ok=True)
    for d in shard_dirs:
        for f in Path(d).iterdir():
            if f.name.startswith("shard-"):
                shutil.copyfile(f, gathered / f.name)
    report = merge_shards(gathered, out / ANNOTATIONS_FILE)
    metrics = {"annotations": str(out / ANNOTATIONS_FILE), **dataclasses.asdict(report)}
    write_metrics(metrics, out)
    shutil.copyfile(out / "annotations.report.md", out / "report.md")
    return metrics


def distill_student(dataset_dir: str | Path, annotations_dir: str | Path, config_json: str, out_dir: str | Path,
                    model_dir: str | Path, method: str = "crsd") -> dict[str, Any]:
    """Train the student from the teacher's annotations (CRSD by default) on the prepared split.

    ``out_dir`` gets metrics (with the teacher's accuracy on the log pairs), curves and ``report.md``;
    ``model_dir`` the saved student alone.
    """
    from distillery.annotation import load_annotations
    from distillery.student.distill import run_distill

    cfg = config_from_json(config_json)
    pairs = read_pairs(Path(dataset_dir) / PAIRS_FILE)
    annotations = load_annotations(Path(annotations_dir) / ANNOTATIONS_FILE)
    summary = run_distill(pairs, annotations, cfg, out_dir, method=method,
                          data_name=str(Path(dataset_dir) / PAIRS_FILE))
    summary["model_dir"] = move_model(Path(out_dir) / "model", model_dir)
    write_metrics(summary, out_dir)
    return summary
