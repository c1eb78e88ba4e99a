"""KFP pipelines: pure wiring of the components in ``components/`` (no logic of their own).

``PIPELINES`` names every pipeline that ``distillery compile`` writes as IR YAML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.annotation import annotation_pipeline
from pipelines.distillation import distillation_pipeline
from pipelines.end_to_end import relevance_distillery
from pipelines.teacher import teacher_pipeline

PIPELINES: dict[str, Any] = {
    "annotation": annotation_pipeline,
    "distillation": distillation_pipeline,
    "end-to-end": relevance_distillery,
    "teacher": teacher_pipeline,
}


def compile_all(out_dir: str | Path) -> list[Path]:
    """Compile every pipeline to ``<out_dir>/<name>.yaml``; returns the paths written."""
    from kfp import compiler

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, func in PIPELINES.items():
        path = out / f"{name}.yaml"
        compiler.Compiler().compile(func, str(path))
        paths.append(path)
    return paths
