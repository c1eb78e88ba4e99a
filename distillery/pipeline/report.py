"""The run report: one Markdown page, PNG plots and ``metrics.json``, assembled from the stages' own outputs.

Every figure in the report is read from the ``metrics.json`` a stage wrote into its output directory;
nothing is recomputed here, so the report cannot disagree with the stages.  ``metrics.json`` holds
each stage's metrics, the deployment gate and the ``artifacts`` map (``teacher``, ``annotations``,
``student``, ``model_repository``: a path or URI every other command accepts, or ``null`` with the
reason in ``missing`` when that stage is not part of this pipeline).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distillery.evaluate import metrics_table, write_json

ARTIFACT_KEYS = ("teacher", "annotations", "student", "baseline", "model_repository")


@dataclass
class StageOutputs:
    """Where each stage wrote its outputs (local directories) and the URIs to publish in the map."""

    dirs: dict[str, str] = field(default_factory=dict)
    """stage name → output directory holding ``metrics.json`` (and PNGs, ``report.md``)."""
    artifacts: dict[str, str | None] = field(default_factory=dict)
    """``ARTIFACT_KEYS`` → path or URI (``None``: the stage is not in the pipeline)."""
    missing: dict[str, str] = field(default_factory=dict)
    """stage → why it is not in this pipeline."""


def load_metrics(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / "metrics.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: the stage wrote no metrics.json")
    return dict(json.loads(path.read_text(encoding="utf-8")))


def gate(student_f1: float, champion_f1: float, baseline_f1: float | None = None) -> dict[str, Any]:
    """The deployment rule of the pipeline's ``dsl.If`` (through the ``deployment_gate`` component): deploy only a
    student at least as good as the serving champion **and** as the run's own seed-label baseline, on the same
    held-out pairs, so that a run never ships a regression — neither against what serves nor against what the
    human labels alone give.  ``reason`` says why, ``better`` names the model to prefer when it does not deploy."""
    out: dict[str, Any] = {"student_macro_f1": student_f1, "champion_macro_f1": champion_f1}
    if baseline_f1 is not None:
        out["baseline_macro_f1"] = baseline_f1
    below = [(name, f1) for name, f1 in (("champion", champion_f1), ("seed-label baseline", baseline_f1))
             if f1 is not None and student_f1 < f1]
    out["deploy"] = not below
    if below:
        name = max(below, key=lambda x: x[1])[0]
        out["better"] = name
        out["reason"] = (f"student {student_f1:.4f} < " + " and ".join(f"{n} {v:.4f}" for n, v in below)
                         + f": the {name} is the better model")
    else:
        out["reason"] = f"student {student_f1:.4f} ≥ champion {champion_f1:.4f}" + (
            f" and ≥ seed-label baseline {baseline_f1:.4f}" if baseline_f1 is not None else "")
    return out


def _copy_pngs(src: Path, dst: Path, prefix: str) -> list[str]:
    names = []
    for png in sorted(src.glob("*.png")):
        name = f"{prefix}-{png.name}"
        shutil.copyfile(png, dst / name)
        names.append(name)
    return names


def _comparison_png(rows: list[tuple[str, float]], path: Path) -> None:
    """Held-out macro-F1 of every model of the run, side by side (teacher vs students vs champion)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 * len(rows) + 2, 3.4))
    bars = ax.bar([r[0] for r in rows], [r[1] for r in rows], color="tab:blue")
    ax.bar_label(bars, fmt="%.3f")
    ax.set_ylabel("macro-F1, held-out queries")
    ax.set_ylim(0, 1)
    ax.set_title("Models of this run")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _model_rows(stages: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(label, metrics) of each evaluated model, in reading order: the teacher on held-out test pairs and on
    the log pairs it annotated, then the students and the champion."""
    rows = []
    on_logs = (stages.get("student") or {}).get("teacher_on_logs")
    if stages.get("teacher_eval"):
        rows.append(("teacher (held-out test pairs, label-position argmax)",
                     stages["teacher_eval"].get("test", stages["teacher_eval"])))
    if on_logs:
        rows.append(("teacher (annotations of the log pairs)", on_logs))
    method = (stages.get("student") or {}).get("method")
    # The baseline's own evaluation task when the run has one (the gate's figure), else its training metrics.
    baseline = "baseline_eval" if stages.get("baseline_eval") else "baseline"
    for stage, label in ((baseline, "fine-tuned baseline (seed labels)"),
                         ("student_eval", f"student ({method})" if method else "student"),
                         ("champion_eval", "champion")):
        m = stages.get(stage)
        if not m:
            continue
        test = m.get("test", m)
        if "macro_f1" in test and test.get("n"):
            rows.append((label, test))
    return rows


def _pct(x: float | None) -> str:
    return "not recorded" if x is None else f"{x:.1%}"


def _annotation_lines(ann: dict[str, Any]) -> list[str]:
    if not ann:
        return []
    labels = ", ".join(f"{k} {v}" for k, v in sorted(ann.get("labels", {}).items()))
    return ["## Annotation", "",
            f"{ann['records']} log pairs annotated in {ann['shards']} shard(s) by "
            f"`{ann.get('teacher', {}).get('model', '?')}`; parse failures {ann['parse_failures']}; reasoning/label "
            f"agreement {_pct(ann.get('label_agreement'))}; labels: {labels}; "
            f"{ann['pairs_per_second']:.2f} pairs/s per shard, {ann['pairs_per_second_all_shards']:.2f} with the "
            f"shards side by side, {ann['generated_tokens_per_second']:.1f} generated tokens/s.", "",
            f"Decoder precision {', '.join(ann.get('decoder_dtype') or ['?'])} on "
            f"{'; '.join(ann.get('hardware') or ['an unrecorded CPU'])}.", ""]


def _export_lines(exp: dict[str, Any]) -> list[str]:
    if not exp:
        return []
    rows = [f"| {r['name']} | {r.get('ran', '?')} | {r['max_abs_diff']:.2e} | {100 * r['agreement']:.2f}% | "
            f"{'pass' if r.get('passed') else 'FAIL'} |" for r in exp.get("parity", [])]
    hw = exp.get("hardware") or {}
    cpu = (f"{hw.get('model', '?')} ({hw.get('isa', '?')}; native bf16 {'yes' if hw.get('bf16_native') else 'no'}, "
           f"int8 VNNI {'yes' if hw.get('int8_vnni') else 'no'}"
           f"{'; masked to ' + hw['masked_to'] if hw.get('masked_to') else ''})") if hw else "an unrecorded CPU"
    refused = [f"- refused {r['precision']} ({r['graph']}): {r['reason']}" for r in exp.get("refused") or []]
    return ["## Export", "", f"Triton model repository version {exp['version']} serves {exp.get('precision')} "
            f"(requested {exp.get('requested_precision', exp.get('precision'))}); parity gate on "
            f"{exp['parity_pairs']} held-out pairs, measured on {cpu}:", "",
            "| graph | ran | max abs logit diff | label agreement | gate |", "|---|---|---|---|---|", *rows,
            *(["", *refused] if refused else []), ""]


def _num(x: Any) -> str:
    return "-" if x is None else f"{x:.4f}"


def _short(label: str) -> str:
    return {"teacher (annotations of the log pairs)": "teacher (logs)",
            "fine-tuned baseline (seed labels)": "baseline"}.get(label, label)


def _markdown(title: str, stages: dict[str, dict[str, Any]], the_gate: dict[str, Any], pngs: list[str],
              outputs: StageOutputs) -> str:
    data = stages.get("data", {})
    lines = [f"# {title}", "", f"Data `{data.get('data', '?')}`: {data.get('pairs', '?')} pairs.", ""]
    if data.get("split"):
        lines += ["| split | queries | pairs |", "|---|---|---|",
                  *[f"| {k} | {v['queries']} | {v['pairs']} |" for k, v in data["split"].items()], ""]
    rows = _model_rows(stages)
    lines += _annotation_lines(stages.get("annotations", {}))
    lines += ["## Models", "", "Students, champion and teacher on the held-out test queries; the teacher also on the "
              "log pairs it annotated (against their hidden human labels).", "",
              "| model | n | macro-F1 | accuracy | macro AUC | ECE |", "|---|---|---|---|---|---|"]
    for label, m in rows:
        lines.append(f"| {label} | {m['n']} | {m['macro_f1']:.4f} | {_num(m.get('accuracy'))} | "
                     f"{_num(m.get('macro_auc_ovr'))} | {_num(m.get('ece'))} |")
    lines += ["", "## Deployment gate", "",
              ("**deploy**: " if the_gate["deploy"] else "**do not deploy**: ") + the_gate["reason"] + ".", ""]
    for label, m in rows:
        if "per_class" in m:
            lines.append(metrics_table(m, label))
    lines += _export_lines(stages.get("export", {}))
    lines += ["## Artifacts", "", "| artifact | location |", "|---|---|"]
    lines += [f"| {k} | {('`' + str(v) + '`') if v else '— (' + outputs.missing.get(k, 'not produced') + ')'} |"
              for k, v in outputs.artifacts.items()]
    if outputs.missing:
        lines += ["", "Stages not in this pipeline: " + "; ".join(f"{k}: {v}" for k, v in outputs.missing.items())]
    lines += ["", "## Plots", "", *[f"![{p}]({p})" for p in pngs]]
    return "\n".join(lines) + "\n"


def assemble(outputs: StageOutputs, out_dir: str | Path, title: str = "Relevance Distillery run") -> dict[str, Any]:
    """Write ``report.md``, the PNGs and ``metrics.json`` into ``out_dir``; returns the metrics."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stages = {name: load_metrics(d) for name, d in outputs.dirs.items()}
    student = stages.get("student_eval", {})
    champion = stages.get("champion_eval", {})
    baseline = stages.get("baseline_eval", {})
    the_gate = gate(float(student.get("macro_f1", 0.0)), float(champion.get("macro_f1", 0.0)),
                    float(baseline["macro_f1"]) if "macro_f1" in baseline else None)
    pngs: list[str] = []
    for name, d in outputs.dirs.items():
        pngs += _copy_pngs(Path(d), out, name)
    rows = _model_rows(stages)
    if rows:
        _comparison_png([(_short(label), float(m["macro_f1"])) for label, m in rows], out / "models.png")
        pngs.insert(0, "models.png")
    artifacts = {k: outputs.artifacts.get(k) for k in ARTIFACT_KEYS}
    outputs.artifacts = artifacts
    (out / "report.md").write_text(_markdown(title, stages, the_gate, pngs, outputs), encoding="utf-8")
    metrics = {"stages": stages, "gate": the_gate, "artifacts": artifacts, "missing": outputs.missing,
               "plots": pngs}
    write_json(metrics, out / "metrics.json")
    return metrics


class ArtifactLike:
    """What a KFP artifact offers here: ``path`` (local) and ``uri`` (canonical location)."""

    path: str
    uri: str


STAGE_INPUTS = {"dataset": "data", "baseline": "baseline", "training": "student", "student_eval": "student_eval",
                "champion_eval": "champion_eval", "baseline_eval": "baseline_eval", "teacher_eval": "teacher_eval",
                "teacher": "teacher",
                "annotations": "annotations", "export": "export"}
"""Report-component input name → stage name in ``metrics.json``."""


def assemble_from_artifacts(out_dir: str | Path, missing: dict[str, str], student: Any,
                            baseline_model: Any = None, **inputs: Any) -> dict[str, Any]:
    """:func:`assemble` from KFP input artifacts (``None`` for a stage that did not run).

    ``student`` is the model that the pipeline evaluates and deploys (the distilled student when the
    distillation stage exists, else the fine-tuned baseline).
    """
    from distillery.pipeline.artifacts import canonical_uri

    dirs = {STAGE_INPUTS[k]: a.path for k, a in inputs.items() if k in STAGE_INPUTS
            if a is not None and (Path(a.path) / "metrics.json").exists()}
    located = {"student": student, "baseline": baseline_model, "teacher": inputs.get("teacher"),
               "annotations": inputs.get("annotations"),
               "model_repository": inputs.get("model_repository")}
    arts = {k: (canonical_uri(a.uri) if a is not None else None) for k, a in located.items()}
    if arts["annotations"]:  # `distillery distill --annotations` takes the merged file
        arts["annotations"] = f"{arts['annotations'].rstrip('/')}/annotations.jsonl"
    return assemble(StageOutputs(dirs=dirs, artifacts=arts, missing=dict(missing)), out_dir)
