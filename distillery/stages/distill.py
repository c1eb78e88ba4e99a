"""Distill stage: train the student from the teacher's annotations (CRSD or a baseline of
:mod:`distillery.student.methods`) on the split, and evaluate it.

The CLI (``distillery distill``) and the pipeline's ``distill_student`` component both call :func:`distill`.

CPU command (tiny, seconds)::

    distillery distill --annotations /tmp/ann/annotations.jsonl --data synthetic:200 --method crsd \\
        --out /tmp/crsd --profile tiny
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distillery.config import Config
from distillery.data.schema import DataError
from distillery.stages.data import DatasetLike, open_dataset

Annotations = dict[tuple[str, str], dict[str, Any]]

ANNOTATIONS_FILE = "annotations.jsonl"
"""The merged annotations inside an annotation stage's output directory."""


def annotations_file(location: str | Path) -> Path:
    """The merged annotations file: ``annotations.jsonl`` in the directory ``location`` (an annotation stage's
    output), else ``location`` itself."""
    path = Path(location)
    return path / ANNOTATIONS_FILE if (path / ANNOTATIONS_FILE).is_file() else path


def check_same_data(annotations: dict[tuple[str, str], Any], keys: set[tuple[str, str]], path: str,
                    data: str) -> None:
    """Annotations must be of pairs of the data (the file of another dataset would train on nothing)."""
    foreign = [k for k in annotations if k not in keys]
    if foreign:
        shown = ", ".join(f"{q}/{i}" for q, i in foreign[:3])
        raise DataError(f"--annotations {path}: {len(foreign)} of its {len(annotations)} records are not pairs of "
                        f"--data {data} (e.g. {shown}); annotate this --data, or pass the data they were made from")


def distill(cfg: Config, data: DatasetLike, annotations: str | Path | None, out_dir: str | Path, *,
            model_dir: str | Path | None = None, method: str = "crsd", variant: str = "") -> dict[str, Any]:
    """Distil ``annotations`` (a merged file or the annotation stage's directory; not needed by the ``human*``
    methods) into a student; ``out_dir`` gets metrics (with the teacher's accuracy on the log
    pairs), curves, ``report.md`` and ``config.yaml``, ``model_dir`` (default ``out_dir/model``) the student.
    Returns the metrics.
    """
    from distillery.student import methods
    from distillery.student.distill import run_distill

    if annotations is None and methods.get(method).uses_annotations:
        raise ValueError(f"distill --method {method}: --annotations is required")
    ds = open_dataset(data)
    records = load(annotations)
    check_same_data(records, ds.keys(), str(annotations), ds.name)
    return run_distill(ds.splits, records, cfg, out_dir, method=method, data_name=ds.name, variant=variant,
                       model_dir=model_dir)


def load(annotations: str | Path | None) -> Annotations:
    """Annotation records by pair key, from a merged file or an annotation stage's directory (``None``: none)."""
    from distillery.annotation import load_annotations

    return load_annotations(annotations_file(annotations)) if annotations is not None else {}
