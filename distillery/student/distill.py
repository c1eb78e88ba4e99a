"""Distil teacher annotations into the student: CRSD and the baselines, at one budget, with a report.

Methods (the table of issue 4; their registry is :mod:`distillery.student.methods`):

- ``human``: fine-tune on the human seed labels only — baseline (a);
- ``hard``: CE to the teacher's labels of the log pairs — (b);
- ``soft``: soft-label KD, CE/KL to the teacher's ``label_probs`` — (c);
- ``crsd``: Contrastive Reasoning Self-Distillation — (d); its ablations come from ``distill.*``
  (``lambda_align=0``, ``lambda_batch=0``, ``reasoning_view_ce=false``);
- ``human-all``: fine-tune on the human labels of every training pair, seed and logs — the upper
  reference (e) that no user has.

With ``distill.include_seed`` the distillation methods also train on the seed pairs with their human
labels.  Evaluation is on the validation and held-out test queries of the same query split.

CPU command (tiny, seconds)::

    distillery distill --annotations /tmp/ann/annotations.jsonl --data synthetic:200 --method crsd \\
        --out /tmp/crsd --profile tiny
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from distillery.config import Config, save_config
from distillery.data.schema import DataError, LabelSet, Pair, label_indices
from distillery.data.splits import Splits
from distillery.evaluate import compute_metrics, metrics_table, save_curves_png, write_json
from distillery.student import methods
from distillery.student.finetune import evaluate_pairs, prepare_run
from distillery.student.model import StudentMeta, build_student
from distillery.student.predictor import Classifier
from distillery.student.trainer import Example, class_weights, fit

Annotations = dict[tuple[str, str], dict[str, Any]]


def _frac(qid: str, iid: str) -> float:
    return int.from_bytes(hashlib.sha1(f"distill\t{qid}\t{iid}".encode()).digest()[:8], "big") / 2**64


UNREADABLE_TEXT = ("no_label_line", "unknown_label", "conflicting_labels")
"""Disagreement codes of an answer whose own text names no label (``distillery.teacher.inference.to_answer``)."""


def _unparsed(rec: dict[str, Any]) -> bool:
    """The answer's text gave no label: a parse error (older records) or a label read only at a forced position."""
    return bool(rec.get("parse_error")) or rec.get("disagreement") in UNREADABLE_TEXT


def confidence(rec: dict[str, Any], label_set: LabelSet) -> float | None:
    """The teacher's probability of its own label (``None``: no distribution of this label set to read it from)."""
    probs, label = rec.get("label_probs"), str(rec.get("label") or "")
    if probs is None or len(probs) != label_set.num_classes or not label_set.knows(label):
        return None
    return float(probs[label_set.index(label)])


def _teacher_example(p: Pair, rec: dict[str, Any], label_set: LabelSet, item: str, cfg: Config) -> Example | None:
    label = rec.get("label")
    if (cfg.distill.drop_parse_errors and _unparsed(rec)) or not label or not label_set.knows(str(label)):
        return None
    sure = confidence(rec, label_set)
    if cfg.distill.min_confidence > 0:
        if sure is None:
            raise DataError(f"annotation {p.query_id}/{p.item_id}: distill.min_confidence="
                            f"{cfg.distill.min_confidence} needs label_probs over the {label_set.name} labels "
                            f"{list(label_set.classes)}; this record has none (set distill.min_confidence=0)")
        if sure < cfg.distill.min_confidence:
            return None
    probs = rec.get("label_probs") if sure is not None else None
    # (probs of another label set's teacher are not used: its hard label maps through the aliases, its probs do not)
    return Example(p.query, item, label_set.index(str(label)), soft=probs,
                   extra={"reasoning": rec.get("reasoning") or "", "source": "teacher"})


def build_examples(splits: Splits, annotations: Annotations, method: str, label_set: LabelSet,
                   cfg: Config) -> tuple[list[Example], dict[str, int]]:
    """Training examples of a method and counts of what was used and left out."""
    fields = cfg.student.item_fields
    counts = {"seed": 0, "logs": 0, "logs_unannotated": 0, "logs_unusable": 0}
    spec = methods.get(method)
    if spec.human_split is not None:
        train = splits.seed if spec.human_split == "seed" else splits.train
        ys = label_indices(train, label_set, "train")
        counts["seed"] = len(splits.seed)
        counts["logs"] = len(train) - len(splits.seed)
        return [Example(p.query, p.item_text(fields), y) for p, y in zip(train, ys, strict=True)], counts
    out: list[Example] = []
    if cfg.distill.include_seed:
        for p, y in zip(splits.seed, label_indices(splits.seed, label_set, "seed"), strict=True):
            rec = annotations.get((p.query_id, p.item_id), {})
            out.append(Example(p.query, p.item_text(fields), y, extra={"reasoning": rec.get("reasoning") or "",
                                                                        "source": "human"}))
        counts["seed"] = len(splits.seed)
    for p in splits.logs:
        if _frac(p.query_id, p.item_id) >= cfg.distill.log_fraction:
            continue
        ann = annotations.get((p.query_id, p.item_id))
        if ann is None:
            counts["logs_unannotated"] += 1
            continue
        ex = _teacher_example(p, ann, label_set, p.item_text(fields), cfg)
        if ex is None:
            counts["logs_unusable"] += 1
            continue
        out.append(ex)
        counts["logs"] += 1
    if spec.soft_labels(cfg) and any(
            e.soft is None and e.extra.get("source") == "teacher" for e in out):
        raise DataError(f"--method {method} with soft labels: the annotations' label_probs do not match the "
                        f"{label_set.name} label set {list(label_set.classes)} (set data.label_set to the teacher's)")
    if counts["logs"] == 0 and counts["logs_unusable"] == 0:
        raise DataError(f"--method {method}: none of the {len(splits.logs)} log pairs is annotated "
                        f"({counts['logs_unannotated']} unannotated); annotate the logs split of this --data first")
    if counts["logs"] == 0:
        # Annotated, but the teacher never gave a usable label (a random-init or untrained teacher): the run
        # goes on with the human seed labels alone and says so, rather than failing a pipeline on model output.
        if not out:
            raise DataError(f"--method {method}: none of the {counts['logs_unusable']} annotated log pairs has a "
                            "usable label and distill.include_seed=false leaves no training example")
        counts["teacher_fallback"] = 1
    return out, counts


def teacher_accuracy(pairs: list[Pair], annotations: Annotations, label_set: LabelSet) -> dict[str, Any] | None:
    """The teacher's annotation quality on the annotated ``pairs`` whose (hidden) human label is known (``None``:
    none is); the rule every benchmark's teacher row uses."""
    ys, preds = [], []
    for p in pairs:
        rec = annotations.get((p.query_id, p.item_id))
        if rec is None or p.label is None or not label_set.knows(p.label):
            continue
        label = str(rec.get("label") or "")
        ys.append(label_set.index(p.label))
        # An unparsed answer counts as wrong: it is what the student would otherwise be taught.
        preds.append(label_set.index(label) if label_set.knows(label) and not rec.get("parse_error") else -1)
    if not ys:
        return None
    wrong = {i: (i + 1) % label_set.num_classes for i in range(label_set.num_classes)}
    preds = [y_hat if y_hat >= 0 else wrong[y] for y, y_hat in zip(ys, preds, strict=True)]
    return compute_metrics(ys, preds, label_set.classes)


def _loss(method: str, examples: list[Example], tokenizer: Any, label_set: LabelSet, cfg: Config) -> Any:
    weights = (class_weights([e.target for e in examples], label_set.num_classes)
               if cfg.train.class_weighting == "balanced" else None)
    return methods.get(method).loss(tokenizer, cfg, weights)


def save_student(model: Any, tokenizer: Any, model_dir: Path, meta: StudentMeta) -> None:
    """A plain sequence classifier: the reasoning view was a training device only, nothing of it is saved."""
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    meta.save(model_dir)


def run_distill(pairs: list[Pair] | Splits, annotations: Annotations, cfg: Config, out_dir: str | Path, *,
                method: str = "crsd", data_name: str = "", variant: str = "", model_dir: str | Path | None = None
                ) -> dict[str, Any]:
    """Train the student with ``method`` on ``pairs`` (split by query unless already a split), evaluate on
    validation and test queries, write a report; the model goes to ``model_dir`` (default ``out_dir/model``)."""
    out, model_dir, label_set, splits = prepare_run(pairs, cfg, out_dir, method, methods.NAMES, "distill",
                                                    model_dir)
    examples, counts = build_examples(splits, annotations, method, label_set, cfg)
    t0 = time.perf_counter()
    tokenizer, model = build_student(cfg.student, label_set, seed=cfg.train.seed)
    result = fit(model, tokenizer, examples, splits.val, label_set, cfg.student, cfg.train,
                 _loss(method, examples, tokenizer, label_set, cfg), desc=method)
    wall = time.perf_counter() - t0
    save_student(model, tokenizer, model_dir, StudentMeta(
        label_set.name, list(label_set.classes), cfg.student.item_fields, cfg.student.max_length, method=method,
        extra={"variant": variant, "distill": dict(cfg.distill.__dict__), "counts": counts}))
    clf = Classifier(model_dir, batch_size=cfg.train.eval_batch_size)
    summary: dict[str, Any] = {
        "method": method, "variant": variant or method, "data": data_name, "profile": cfg.profile,
        "seed": cfg.train.seed, "split": splits.sizes(), "train_examples": len(examples), "counts": counts,
        "wall_seconds": wall, "train_seconds": result.train_seconds, "best_epoch": result.best_epoch,
        "history": result.history, "val": evaluate_pairs(clf, splits.val, label_set, "validation"),
        "test": evaluate_pairs(clf, splits.test, label_set, "test"), "model_dir": str(model_dir),
        "teacher_on_logs": teacher_accuracy(splits.logs, annotations, label_set) if annotations else None,
    }
    save_curves_png(result.history, out / "training_curves.png", f"{variant or method} ({data_name})")
    write_json(summary, out / "metrics.json")
    save_config(cfg, out / "config.yaml")
    _write_report(summary, out)
    return summary


def _write_report(s: dict[str, Any], out: Path) -> None:
    c = s["counts"]
    lines = [f"# Distillation report — {s['variant']}", "",
             f"Data `{s['data']}` · profile `{s['profile']}` · seed {s['seed']} · {s['train_examples']} training "
             f"examples ({c['seed']} seed, {c['logs']} logs; {c['logs_unannotated']} log pairs unannotated, "
             f"{c['logs_unusable']} unusable) · wall {s['wall_seconds']:.1f} s · best epoch {s['best_epoch']}", "",
             metrics_table(s["val"], "Validation queries"), metrics_table(s["test"], "Held-out test queries")]
    if c.get("teacher_fallback"):
        lines += [f"**The teacher gave no usable label** on any of the {c['logs_unusable']} annotated log pairs "
                  "(unparsed answers or labels outside the set): this student learned from the human seed labels "
                  "alone, so it is no distillation result.", ""]
    if s.get("teacher_on_logs"):
        lines.append(metrics_table(s["teacher_on_logs"], "Teacher annotations vs hidden human labels (log pairs)"))
    lines += ["![curves](training_curves.png)"]
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
