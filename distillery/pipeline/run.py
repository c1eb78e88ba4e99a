"""The library side of ``distillery run``: defaults per profile, the run directory, the final report.

The pipeline itself runs on KFP's local runner (``pipelines/local.py``, the only place that imports
``kfp`` for it); this module prepares its arguments and turns its outputs into ``--out``:
``report.md``, the PNGs, ``metrics.json`` (with the ``artifacts`` map and per-task timings),
``pipeline.log`` (every task's full output) and ``pipeline_root/`` (KFP's outputs and task cache).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from distillery.config import Config
from distillery.evaluate import write_json
from distillery.pipeline.budget import MachineFit
from distillery.pipeline.progress import TaskEvents

DEFAULT_DATA = {"tiny": "synthetic:600", "demo": "synthetic:3000", "full": "synthetic:20000"}
"""The synthetic marketplace by default, so that ``distillery run`` works anywhere."""

_FAILED = re.compile(r"Inner task failed: (.+?)\.?$")


def pipeline_arguments(cfg: Config, data: str, *, champion: str | None = None, publish: str | None = None,
                       shards: int = 2, method: str = "crsd", ab_users: int = 2000, serving_uri: str = "",
                       teacher_eval_pairs: int = 200) -> dict[str, Any]:
    """The end-to-end pipeline's parameters for one local run (the names its compiled YAML declares)."""
    from distillery.stages._io import config_to_json

    return {"data_spec": data, "config_json": config_to_json(cfg), "shards": shards, "distill_method": method,
            "champion": champion or "", "serving_uri": serving_uri, "ab_users": ab_users, "output_uri": publish or "",
            "teacher_eval_pairs": teacher_eval_pairs}


class RunFailed(RuntimeError):
    """A pipeline task failed; the message names it and gives its error."""


def failure(exc: BaseException, events: TaskEvents, log_path: str | Path) -> RunFailed:
    """The error to show when the local runner stops: the failed task's name and its own error line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    m = _FAILED.search(text)
    chain = m.group(1).replace("'", "") if m else "?"
    task = events.failed[0] if events.failed else chain.split(" inside ")[0]
    return RunFailed(f"task {task!r} failed ({chain}): {events.error_of(task)}; full log: {log_path}")


def conditional_outputs(pipeline_root: str | Path, task: str, output: str) -> Path | None:
    """The output directory of a task under a ``dsl.If`` in the newest run, if the condition held."""
    runs = sorted(Path(pipeline_root).glob("relevance-distillery-*"))
    if not runs:
        return None
    found = sorted(runs[-1].rglob(f"{task}/{output}/metrics.json"))
    return found[0].parent if found else None


def _ab_lines(ab_dir: Path | None, out: Path) -> tuple[dict[str, Any] | None, list[str]]:
    if ab_dir is None:
        return None, []
    ab = dict(json.loads((ab_dir / "metrics.json").read_text(encoding="utf-8")))
    pngs = []
    for png in sorted(ab_dir.glob("*.png")):
        shutil.copyfile(png, out / f"abtest-{png.name}")
        pngs.append(f"abtest-{png.name}")
    lines = ["", "## A/B evaluation against the champion", "",
             f"Decision **{ab['decision']}** after {sum(ab['users'].values())} simulated users "
             f"(sample-ratio p = {ab['srm_p']:.3f}): " + "; ".join(ab["reasons"]), "",
             *[f"![{p}]({p})" for p in pngs]]
    return ab, lines


def finalize(bundle_dir: str | Path, out_dir: str | Path, events: TaskEvents, *, wall_seconds: float,
             published: dict[str, str] | None = None, serving_uri: str = "",
             ab_dir: Path | None = None, machine_fit: MachineFit | None = None) -> dict[str, Any]:
    """Copy the report bundle into ``out_dir`` and add the task timings (and, for the demo, how its teacher work
    was fitted to the machine) to ``metrics.json`` and the report."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for f in Path(bundle_dir).iterdir():
        if f.is_file():
            shutil.copyfile(f, out / f.name)
    metrics = dict(json.loads((out / "metrics.json").read_text(encoding="utf-8")))
    timings = {name: round(sec, 2) for name, sec in events.seconds.items()}
    metrics["run"] = {"wall_seconds": round(wall_seconds, 1), "task_seconds": timings,
                      "cached_tasks": sorted(set(events.cached)),
                      "machine_fit": machine_fit.to_dict() if machine_fit else None}
    if published:
        metrics["published"] = published
    # The pipeline's dsl.If deployed the repository exactly when this rule holds (same figures).
    metrics["deployed"] = serving_uri if metrics["gate"]["deploy"] and serving_uri else None
    metrics["abtest"], ab_lines = _ab_lines(ab_dir, out)
    write_json(metrics, out / "metrics.json")
    lines = [*ab_lines, *(machine_fit.lines() if machine_fit else []), "", "## Tasks", "",
             f"Wall time {wall_seconds:.1f} s.", "", "| task | seconds |", "|---|---|",
             *[f"| {name} | {sec:.1f} |" for name, sec in timings.items()],
             *[f"| {name} | reused from the cache |" for name in sorted(set(events.cached))]]
    if metrics["deployed"]:
        lines += ["", f"Deployed the model repository to `{metrics['deployed']}` (Triton serves from there)."]
    if published:
        lines += ["", "Published:", "", *[f"- {k}: `{v}`" for k, v in published.items()]]
    with (out / "report.md").open("a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return metrics


def published_locations(bundle_dir: str | Path, uri: str) -> dict[str, str]:
    """Where the pipeline's publish step copied each artifact of the map (and the report) under ``uri``."""
    from distillery.pipeline.report import load_metrics

    base = uri.rstrip("/")
    names = [k for k, v in load_metrics(bundle_dir)["artifacts"].items() if v] + ["report"]
    out = {name: f"{base}/{name}" for name in names}
    if "annotations" in out:  # the merged file inside the published directory, as in the artifacts map
        out["annotations"] += "/annotations.jsonl"
    return out
