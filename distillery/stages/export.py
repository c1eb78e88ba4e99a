"""Export stage: a saved student → ONNX, parity-gated on held-out pairs → one version of a Triton model repository.

One implementation for ``distillery export`` (parity pairs from ``--data``) and the pipeline's
``export_model_repository`` component (the prepared dataset's test split).  Every ``export.*`` setting
reaches the repository: :func:`distillery.export.repository.build_repository` takes ``cfg.export`` itself.

CPU command: ``distillery export --model /tmp/ft/model --data synthetic:200 --out /tmp/repo --profile tiny``;
in Python::

    from distillery.config import load_config
    from distillery.stages import export

    export.export(load_config("tiny"), "/tmp/ft/model", "/tmp/dataset", "/tmp/repo", "/tmp/export")
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from distillery.config import Config
from distillery.stages._io import write_metrics
from distillery.stages.data import DatasetLike, open_dataset

if TYPE_CHECKING:
    from distillery.data.schema import Pair

SPLITS = ("all", "test", "val")
"""Which pairs of the data the parity gate runs on: every pair, or one held-out split."""


def parity_pairs(data: DatasetLike, split: str = "test", limit: int = 0) -> list[Pair]:
    """The pairs the parity gate runs on: ``split`` of ``data`` (``all``: every pair), at most ``limit`` (0: all)."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: must be one of {', '.join(SPLITS)}")
    ds = open_dataset(data)
    pairs = ds.all_pairs() if split == "all" else ds.part(split)
    return pairs[:limit] if limit else pairs


def item_fields(cfg: Config, model: str | Path) -> list[str]:
    """The item fields the student was trained on (its ``distillery.json``; ``student.item_fields`` for S3)."""
    from distillery import storage

    if not storage.is_s3(model):
        from distillery.student.model import StudentMeta

        fields = StudentMeta.load(model).item_fields
        if fields:
            return list(fields)
    return list(cfg.student.item_fields)


def export(cfg: Config, model: str | Path, data: DatasetLike, repo: str | Path, out_dir: str | Path | None = None,
           *, split: str = "test", limit: int = 0, version: int = 1, promote: bool = True,
           work_dir: str | Path | None = None) -> dict[str, Any]:
    """Export ``model`` as version ``version`` of the repository at ``repo`` (a directory or ``s3://``; extended
    if it exists), gated on :func:`parity_pairs` of ``data``.  ``promote``: point ``relevance`` at it.

    The repository gets its own ``export-report-v<version>.md``; with ``out_dir`` the stage also writes
    ``metrics.json`` and ``report.md`` there.  Raises :class:`distillery.export.parity.ParityError` when a graph
    misses its bounds (nothing is written).  Returns the metrics.
    """
    from distillery.export.repository import build_repository

    pairs = parity_pairs(data, split, limit)
    fields = item_fields(cfg, model)
    manifest = build_repository(model, repo, version, cfg.export, queries=[p.query for p in pairs],
                                items=[p.item_text(fields) for p in pairs], promote=promote, work_dir=work_dir)
    entry = manifest["versions"][str(version)]
    metrics = {"repository": str(repo), "version": version, "champion": manifest.get("champion"),
               "precision": entry.get("precision"), "requested_precision": entry.get("requested_precision"),
               "refused": entry.get("refused", []), "hardware": entry.get("hardware"),
               "parity": entry.get("parity", []), "parity_pairs": len(pairs)}
    if out_dir is not None:
        write_metrics(metrics, out_dir)
        Path(out_dir, "report.md").write_text(report(metrics), encoding="utf-8")
    return metrics


def report(metrics: dict[str, Any]) -> str:
    """``report.md``: the served precision and the parity table of every gated graph."""
    rows = [f"| {r['name']} | {r['max_abs_diff']:.2e} | {100 * r['agreement']:.2f}% | "
            f"{'pass' if r['passed'] else 'FAIL'} |" for r in metrics["parity"]]
    refused = [f"- refused {r['precision']} ({r['graph']}): {r['reason']}" for r in metrics["refused"]]
    lines = [f"# Export: Triton repository, version {metrics['version']}", "",
             f"Serves {metrics['precision']} (requested {metrics['requested_precision']}). "
             f"Parity on {metrics['parity_pairs']} held-out pairs:",
             "", "| graph | max abs logit diff | label agreement | gate |", "|---|---|---|---|", *rows,
             *(["", *refused] if refused else [])]
    return "\n".join(lines) + "\n"
