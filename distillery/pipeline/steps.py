"""The library side of each pipeline step: plain paths in, files and a metrics dict out.

A KFP component (``components/``) only maps its typed artifacts onto these functions, so every step is
testable without KFP.  Each step writes ``metrics.json`` (and a ``report.md`` where a person reads it)
into its output directory; the run report (:mod:`distillery.pipeline.report`) is assembled from exactly
those files.  The configuration travels between steps as the JSON of a resolved :class:`Config`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distillery.config import Config, load_config

PAIRS_FILE = "pairs.jsonl"
SPLIT_FILES = ("seed", "logs", "val", "test")


def config_to_json(cfg: Config) -> str:
    return json.dumps(cfg.to_dict(), sort_keys=True)


def config_from_json(text: str) -> Config:
    """The :class:`Config` a step runs with (validated again: a step may run on another machine).

    ``text`` is the JSON of a resolved config, or just a profile name (``demo``: the compiled default).
    """
    if not text.lstrip().startswith("{"):
        return load_config(text.strip() or "demo")
    values = json.loads(text)
    profile = values.pop("profile", "demo")
    return load_config(profile, overrides=values)


def read_pairs(path: str | Path) -> list[Any]:
    from distillery.data.schema import DataError, Pair

    pairs = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            try:
                pairs.append(Pair.from_json(json.loads(line)))
            except (ValueError, TypeError) as exc:
                raise DataError(f"{path}:{lineno}: not a pair record: {exc}") from None
    return pairs


def write_metrics(metrics: dict[str, Any], out_dir: str | Path, extra_file: str | None = None) -> None:
    """``metrics.json`` in ``out_dir``; also at ``extra_file`` (a KFP Metrics artifact's own path)."""
    from distillery.evaluate import write_json

    write_json(metrics, Path(out_dir) / "metrics.json")
    if extra_file:
        write_json(metrics, extra_file)


def prepare_data(data_spec: str, config_json: str, out_dir: str | Path) -> dict[str, Any]:
    """Load ``data_spec``, split it by query and write every part as JSONL with the split sizes.

    ``logs.jsonl`` keeps the gold labels only so that annotation accuracy can be measured; the
    teacher and students get them through :func:`distillery.data.hide_labels`.
    """
    from distillery.data import load, split_pairs, write_jsonl
    from distillery.data.splits import subsample_queries

    cfg = config_from_json(config_json)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pairs, load_report = load(data_spec, synthetic_noise=cfg.data.synthetic_noise)
    pairs = subsample_queries(pairs, cfg.data.max_queries, cfg.data.split_seed)
    splits = split_pairs(pairs, cfg.data)
    write_jsonl(pairs, out / PAIRS_FILE)
    for name in SPLIT_FILES:
        write_jsonl(getattr(splits, name), out / f"{name}.jsonl")
    manifest = {name: sorted({p.query_id for p in getattr(splits, name)}) for name in SPLIT_FILES}
    (out / "splits.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    sizes = splits.sizes()
    metrics: dict[str, Any] = {"data": data_spec, "source": load_report.source, "rows_read": load_report.rows_read,
                               "pairs": len(pairs), "split": sizes}
    write_metrics(metrics, out)
    lines = [f"# Data: `{data_spec}`", "", f"{len(pairs)} pairs from {load_report.source}", "",
             "| split | queries | pairs |", "|---|---|---|",
             *[f"| {k} | {v['queries']} | {v['pairs']} |" for k, v in sizes.items()]]
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return metrics


def finetune_student(dataset_dir: str | Path, config_json: str, out_dir: str | Path, model_dir: str | Path, *,
                     seed_only: bool = True) -> dict[str, Any]:
    """Fine-tune the student on the human labels (seed share by default: the distillation baseline).

    The split is recomputed from ``pairs.jsonl`` with the same seed, so it is the one of ``prepare_data``.
    ``out_dir`` gets ``metrics.json`` (validation and test), curves and confusion PNGs and ``report.md``;
    ``model_dir`` the saved model alone, a directory ``distillery evaluate --model`` accepts.
    """
    from distillery.student.finetune import run_finetune

    cfg = config_from_json(config_json)
    pairs = read_pairs(Path(dataset_dir) / PAIRS_FILE)
    summary = run_finetune(pairs, cfg, out_dir, method="bert", seed_only=seed_only,
                           data_name=str(Path(dataset_dir) / PAIRS_FILE))
    summary["model_dir"] = move_model(Path(out_dir) / "model", model_dir)
    write_metrics(summary, out_dir)
    return summary


def move_model(src: Path, dst: str | Path) -> str:
    import shutil

    target = Path(dst)
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(src), str(target))
    return str(target)


def evaluate_model(model: str | Path, dataset_dir: str | Path, config_json: str, out_dir: str | Path,
                   name: str, split: str = "test") -> dict[str, Any]:
    """Metrics of a saved model (a directory or an ``s3://`` URI) on one split of the dataset."""
    from distillery.data.schema import get_label_set, label_indices
    from distillery.evaluate import compute_metrics, metrics_table, save_confusion_png
    from distillery.storage import fetch
    from distillery.student.predictor import Classifier

    cfg = config_from_json(config_json)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clf = Classifier(fetch(model, out / ".cache"), batch_size=cfg.train.eval_batch_size)
    label_set = get_label_set(clf.meta.label_set)
    pairs = read_pairs(Path(dataset_dir) / f"{split}.jsonl")
    probs = clf.predict_proba(pairs)
    metrics = compute_metrics(label_indices(pairs, label_set, f"{split}.jsonl"), probs.argmax(axis=1),
                              label_set.classes, probs)
    metrics.update(name=name, model=str(model), split=split)
    write_metrics(metrics, out)
    save_confusion_png(metrics, out / "confusion.png", f"{name} on held-out {split} queries")
    (out / "report.md").write_text(metrics_table(metrics, f"{name} on held-out {split} queries"), encoding="utf-8")
    return metrics


def champion_macro_f1(champion: str, dataset_dir: str | Path, config_json: str, out_dir: str | Path) -> float:
    """The serving model's macro-F1 on the same held-out split; 0.0 when there is no champion yet."""
    if not champion:
        write_metrics({"name": "champion", "model": None, "macro_f1": 0.0,
                       "note": "no champion: the first student is deployed"}, out_dir)
        return 0.0
    return float(evaluate_model(champion, dataset_dir, config_json, out_dir, "champion")["macro_f1"])


def publish(artifacts: dict[str, str], uri: str) -> dict[str, str]:
    """Copy each named artifact directory to ``uri/<name>`` (local or ``s3://``); returns the new locations."""
    from distillery.storage import copy_tree

    base = uri.rstrip("/")
    return {name: copy_tree(path, f"{base}/{name}") for name, path in artifacts.items()}


def publish_named(uri: str, **artifacts: Any) -> dict[str, str]:
    """:func:`publish` for KFP input artifacts given by name (``None``: that stage did not run)."""
    return publish({name: a.path for name, a in artifacts.items() if a is not None}, uri)
