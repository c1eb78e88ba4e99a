"""What a component does with its typed KFP artifacts after a step ran (duck-typed: no ``kfp`` import).

Metrics go three ways: ``metrics.json`` in the step's output directory (for the run report), the JSON
at the ``Metrics`` artifact's own path (KFP's local cache treats an output without a file as missing,
so a step that only logged metrics would never be reused), and scalar ``log_metric`` calls for the UI.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Protocol


class MetricsArtifact(Protocol):
    path: str

    def log_metric(self, metric: str, value: float) -> None: ...


class FileArtifact(Protocol):
    path: str


def scalars(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a nested metrics dict, flattened to ``a.b.c`` names (lists left out)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            out[name] = float(value)
        elif isinstance(value, dict):
            out.update(scalars(value, f"{name}."))
    return out


def finish(out_dir: str | Path, metrics: dict[str, Any], metrics_artifact: MetricsArtifact | None = None,
           report_artifact: FileArtifact | None = None, keys: tuple[str, ...] = ()) -> None:
    """Record a finished step on its artifacts: metrics file + scalars, and ``report.md`` as Markdown."""
    from distillery.evaluate import write_json

    if metrics_artifact is not None:
        write_json(metrics, metrics_artifact.path)
        flat = scalars(metrics)
        for name in keys or tuple(flat):
            if name in flat:
                metrics_artifact.log_metric(name, flat[name])
    if report_artifact is not None:
        src = Path(out_dir) / "report.md"
        Path(report_artifact.path).parent.mkdir(parents=True, exist_ok=True)
        if src.exists():
            shutil.copyfile(src, report_artifact.path)
        else:
            Path(report_artifact.path).write_text("(this step wrote no report)\n", encoding="utf-8")


def canonical_uri(uri: str) -> str:
    """An artifact URI other commands accept: KFP's ``minio://`` store is S3-compatible, so ``s3://``."""
    if uri.startswith("minio://"):
        return "s3://" + uri[len("minio://"):]
    return uri
