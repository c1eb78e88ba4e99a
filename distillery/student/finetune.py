"""Plain fine-tuning on human labels (the baseline every distilled student must beat) and the lexical
floor, each split by query, evaluated on validation and held-out test queries, with a report.

CPU command (seconds): ``distillery finetune --data synthetic:600 --out /tmp/ft --profile tiny``
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from distillery.config import Config, save_config
from distillery.data.schema import LabelSet, Pair, get_label_set, label_indices
from distillery.data.splits import Splits, split_pairs
from distillery.evaluate import (
    compute_metrics,
    metrics_table,
    save_confusion_png,
    save_curves_png,
    write_json,
)
from distillery.student.lexical import LexicalModel
from distillery.student.model import StudentMeta, build_student
from distillery.student.predictor import Classifier
from distillery.student.trainer import FitResult, class_weights, examples_from_pairs, fit, weighted_ce

METHODS = ("bert", "lexical")


def evaluate_pairs(clf: Classifier, pairs: list[Pair], label_set: LabelSet, source: str) -> dict[str, Any]:
    probs = clf.predict_proba(pairs)
    y = label_indices(pairs, label_set, source)
    return compute_metrics(y, probs.argmax(axis=1), label_set.classes, probs)


def _train_bert(train: list[Pair], splits: Splits, cfg: Config, label_set: LabelSet, model_dir: Path
                ) -> FitResult:
    tokenizer, model = build_student(cfg.student, label_set, seed=cfg.train.seed)
    examples = examples_from_pairs(train, label_set, cfg.student.item_fields)
    weights = (class_weights([e.target for e in examples], label_set.num_classes)
               if cfg.train.class_weighting == "balanced" else None)
    result = fit(model, tokenizer, examples, splits.val, label_set, cfg.student, cfg.train,
                 weighted_ce(weights), desc="finetune")
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return result


def split_manifest(splits: Splits) -> dict[str, list[str]]:
    return {name: sorted({p.query_id for p in getattr(splits, name)}) for name in ("seed", "logs", "val", "test")}


def prepare_run(pairs: list[Pair] | Splits, cfg: Config, out_dir: str | Path, method: str,
                methods: tuple[str, ...], command: str, model_dir: str | Path | None = None
                ) -> tuple[Path, Path, LabelSet, Splits]:
    """What every training command does first: check the method, make the model directory (``OUT/model`` by
    default), split by query (unless ``pairs`` is already a split: a prepared dataset is never split again)."""
    if method not in methods:
        raise ValueError(f"--method {method!r}: must be one of {', '.join(methods)}")
    out = Path(out_dir)
    model_path = Path(model_dir) if model_dir is not None else out / "model"
    model_path.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    splits = pairs if isinstance(pairs, Splits) else split_pairs(pairs, cfg.data)
    if not splits.val:
        raise ValueError(f"{command} needs validation queries: set data.val_fraction above 0")
    return out, model_path, get_label_set(cfg.data.label_set), splits


def run_finetune(pairs: list[Pair] | Splits, cfg: Config, out_dir: str | Path, *, method: str = "bert",
                 seed_only: bool = False, data_name: str = "", model_dir: str | Path | None = None
                 ) -> dict[str, Any]:
    """Split (unless given a split), train, evaluate and report.  Returns (and writes) ``metrics.json``;
    the model goes to ``model_dir`` (default ``out_dir/model``)."""
    out, model_dir, label_set, splits = prepare_run(pairs, cfg, out_dir, method, METHODS, "finetune", model_dir)
    train = splits.seed if seed_only else splits.train
    t0 = time.perf_counter()
    fit_result: FitResult | None = None
    if method == "lexical":
        LexicalModel(cfg.lexical, list(label_set.classes)).fit(train, label_set).save(model_dir)
    else:
        fit_result = _train_bert(train, splits, cfg, label_set, model_dir)
    wall = time.perf_counter() - t0
    StudentMeta(label_set.name, list(label_set.classes), cfg.student.item_fields, cfg.student.max_length,
                method="lexical" if method == "lexical" else ("finetune-seed" if seed_only else "finetune"),
                ).save(model_dir)
    clf = Classifier(model_dir, batch_size=cfg.train.eval_batch_size)
    val_m = evaluate_pairs(clf, splits.val, label_set, "validation")
    test_m = evaluate_pairs(clf, splits.test, label_set, "test")
    summary: dict[str, Any] = {
        "method": method, "seed_only": seed_only, "data": data_name, "profile": cfg.profile,
        "split": splits.sizes(), "train_pairs": len(train), "wall_seconds": wall,
        "val": val_m, "test": test_m, "model_dir": str(model_dir),
    }
    if fit_result is not None:
        summary.update(history=fit_result.history, best_epoch=fit_result.best_epoch,
                       train_seconds=fit_result.train_seconds,
                       train_examples_per_second=fit_result.examples_per_second)
        save_curves_png(fit_result.history, out / "training_curves.png", f"Fine-tuning ({data_name})")
    save_confusion_png(test_m, out / "confusion_test.png", f"{method} on held-out queries")
    write_json(summary, out / "metrics.json")
    (out / "splits.json").write_text(json.dumps(split_manifest(splits), indent=1), encoding="utf-8")
    save_config(cfg, out / "config.yaml")
    _write_report(summary, out)
    return summary


def _write_report(summary: dict[str, Any], out: Path) -> None:
    sizes = summary["split"]
    lines = [
        f"# Fine-tuning report — {summary['method']}{' (seed labels only)' if summary['seed_only'] else ''}",
        "",
        f"Data: `{summary['data']}` · profile `{summary['profile']}` · trained on {summary['train_pairs']} "
        f"pairs · wall {summary['wall_seconds']:.1f} s",
        "",
        "| split | queries | pairs |", "|---|---|---|",
        *[f"| {k} | {v['queries']} | {v['pairs']} |" for k, v in sizes.items()],
        "",
        metrics_table(summary["val"], "Validation queries"),
        metrics_table(summary["test"], "Held-out test queries"),
        "![confusion](confusion_test.png)",
    ]
    if "history" in summary:
        lines += ["", f"Best epoch {summary['best_epoch']} · {summary['train_examples_per_second']:.1f} "
                  "training pairs/s", "", "![curves](training_curves.png)"]
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
