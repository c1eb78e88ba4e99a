"""Pipeline steps after training: export to a Triton model repository, deployment, the online A/B evaluation.

Like :mod:`distillery.pipeline.steps`: plain paths in, files and a metrics dict out, no ``kfp``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distillery.pipeline.steps import config_from_json, read_pairs, write_metrics


def export_repository(model_dir: str | Path, dataset_dir: str | Path, config_json: str, repo_dir: str | Path,
                      out_dir: str | Path, version: int = 1) -> dict[str, Any]:
    """Export the student (ONNX, parity-gated on the held-out test pairs) as version ``version`` of a Triton
    model repository in ``repo_dir`` (what ``distillery serve --repo`` takes); figures go to ``out_dir``."""
    from distillery.export.repository import build_from_config
    from distillery.student.model import StudentMeta

    cfg = config_from_json(config_json)
    fields = StudentMeta.load(model_dir).item_fields or cfg.student.item_fields
    test = read_pairs(Path(dataset_dir) / "test.jsonl")
    # Every export.* setting reaches the repository (int8, bf16, variants, batching, gate bounds).
    manifest = build_from_config(model_dir, repo_dir, version, cfg.export, queries=[p.query for p in test],
                                 items=[p.item_text(fields) for p in test], promote=True)
    entry = manifest["versions"][str(version)]
    metrics = {"repository": str(repo_dir), "version": version, "champion": manifest.get("champion"),
               "precision": entry.get("precision"), "requested_precision": entry.get("requested_precision"),
               "refused": entry.get("refused", []), "hardware": entry.get("hardware"),
               "parity": entry.get("parity", []), "parity_pairs": len(test)}
    write_metrics(metrics, out_dir)
    rows = [f"| {r['name']} | {r['max_abs_diff']:.2e} | {100 * r['agreement']:.2f}% | "
            f"{'pass' if r['passed'] else 'FAIL'} |" for r in metrics["parity"]]
    refused = [f"- refused {r['precision']} ({r['graph']}): {r['reason']}" for r in metrics["refused"]]
    Path(out_dir, "report.md").write_text(
        "\n".join([f"# Export: Triton repository, version {version}", "",
                   f"Serves {metrics['precision']} (requested {metrics['requested_precision']}). "
                   f"Parity on {len(test)} held-out pairs:",
                   "", "| graph | max abs logit diff | label agreement | gate |", "|---|---|---|---|", *rows,
                   *(["", *refused] if refused else [])]) + "\n",
        encoding="utf-8")
    return metrics


def deploy(repo_dir: str | Path, target: str) -> str:
    """Copy the model repository to where Triton serves it from (a directory or ``s3://``, with checksums)."""
    from distillery.storage import copy_tree

    if not target:
        raise ValueError("deploy: no target given (the pipeline's serving_uri)")
    return copy_tree(repo_dir, target)


def ab_evaluate(champion: str, challenger: str | Path, dataset_dir: str | Path, config_json: str,
                out_dir: str | Path, users: int) -> dict[str, Any]:
    """Champion vs the new student online: Triton + the splitter on loopback, simulated users on the held-out
    queries, the sequential promotion gate.  Writes ``decision.json``, the report and its plots."""
    from distillery.abtest.local import run_local
    from distillery.abtest.simulator import build_queries
    from distillery.storage import fetch

    cfg = config_from_json(config_json)
    out = Path(out_dir)
    queries = build_queries(read_pairs(Path(dataset_dir) / "test.jsonl"), "test.jsonl")
    champion_dir = fetch(champion, out / ".cache")
    run = run_local(str(champion_dir), str(challenger), queries, users, (50.0, 50.0), out, cfg.abtest,
                    progress=False, context={"data": "held-out test queries"})
    d = run.result.decision
    metrics = {"decision": d.decision, "reasons": list(d.reasons), "users": d.users, "srm_p": d.srm_p}
    write_metrics(metrics, out)
    return metrics
