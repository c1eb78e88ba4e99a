"""Finetune stage: the baseline student (or the lexical floor) fine-tuned on human labels of the split.

The CLI (``distillery finetune --data SPEC``) and the pipeline's ``finetune_student`` component both call
:func:`finetune`; the training itself is :func:`distillery.student.finetune.run_finetune`.

CPU command (seconds): ``distillery finetune --data synthetic:600 --out /tmp/ft --profile tiny``
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distillery.config import Config
from distillery.stages.data import DatasetLike, open_dataset


def finetune(cfg: Config, data: DatasetLike, out_dir: str | Path, *, model_dir: str | Path | None = None,
             method: str = "bert", seed_only: bool = False) -> dict[str, Any]:
    """Train on the seed share (``seed_only``) or every training pair, evaluate on validation and test queries.

    ``out_dir`` gets ``metrics.json``, ``report.md``, curves and confusion PNGs, ``splits.json`` and
    ``config.yaml``; the model goes to ``model_dir`` (default ``out_dir/model``), a directory
    ``distillery evaluate --model`` accepts.  Returns the metrics.
    """
    from distillery.student.finetune import run_finetune

    ds = open_dataset(data)
    return run_finetune(ds.splits, cfg, out_dir, method=method, seed_only=seed_only, data_name=ds.name,
                        model_dir=model_dir)
