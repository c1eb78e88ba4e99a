"""Evaluate stage: a saved student's metrics on labelled pairs (macro-F1, per class, confusion, AUC, ECE).

Two callers, one implementation: the pipeline's ``evaluate_model`` / ``score_champion`` components evaluate
on the held-out test split of the prepared dataset (:func:`evaluate`, :func:`champion_macro_f1`), and
``distillery evaluate --model DIR --data SPEC --out FILE.json`` on every row of a spec (:func:`evaluate_spec`).

CPU command: ``distillery evaluate --model /tmp/ft/model --data synthetic:200,seed=9 --out /tmp/eval.json``
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from distillery.config import Config
from distillery.stages._io import write_metrics
from distillery.stages.data import DatasetLike, open_dataset

if TYPE_CHECKING:
    from distillery.data.schema import Pair


def score(cfg: Config, model: str | Path, pairs: list[Pair], source: str, cache_dir: str | Path,
          progress: bool = False) -> dict[str, Any]:
    """Metrics of ``model`` (a directory or an ``s3://`` URI, fetched into ``cache_dir``) on ``pairs``."""
    from distillery.data.schema import get_label_set, label_indices
    from distillery.evaluate import compute_metrics
    from distillery.storage import fetch
    from distillery.student.predictor import Classifier

    clf = Classifier(fetch(model, cache_dir), batch_size=cfg.train.eval_batch_size)
    label_set = get_label_set(clf.meta.label_set)
    y = label_indices(pairs, label_set, source)
    probs = clf.predict_proba(pairs, progress=progress)
    return compute_metrics(y, probs.argmax(axis=1), label_set.classes, probs)


def evaluate(cfg: Config, model: str | Path, data: DatasetLike, out_dir: str | Path, name: str,
             split: str = "test") -> dict[str, Any]:
    """``model`` on one split of the dataset: ``metrics.json``, ``confusion.png`` and ``report.md`` in
    ``out_dir``.  Returns the metrics."""
    from distillery.evaluate import metrics_table, save_confusion_png

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = score(cfg, model, open_dataset(data).part(split), f"{split}.jsonl", out / ".cache")
    metrics.update(name=name, model=str(model), split=split)
    write_metrics(metrics, out)
    title = f"{name} on held-out {split} queries"
    save_confusion_png(metrics, out / "confusion.png", title)
    (out / "report.md").write_text(metrics_table(metrics, title), encoding="utf-8")
    return metrics


def champion_macro_f1(cfg: Config, champion: str, data: DatasetLike, out_dir: str | Path) -> float:
    """The serving model's macro-F1 on the same held-out split; 0.0 when there is no champion yet."""
    if not champion:
        write_metrics({"name": "champion", "model": None, "macro_f1": 0.0,
                       "note": "no champion: the first student is deployed"}, out_dir)
        return 0.0
    return float(evaluate(cfg, champion, data, out_dir, "champion")["macro_f1"])


def evaluate_spec(cfg: Config, model: str | Path, data_spec: str, out_file: str | Path) -> dict[str, Any]:
    """``model`` on every row of ``data_spec``: the metrics JSON at ``out_file``, a confusion PNG beside it."""
    from distillery.data.spec import load
    from distillery.evaluate import save_confusion_png, write_json

    pairs, _ = load(data_spec, synthetic_noise=cfg.data.synthetic_noise)
    out = Path(out_file)
    metrics = score(cfg, model, pairs, data_spec, out.parent / ".cache", progress=True)
    metrics.update(model=str(model), data=data_spec)
    write_json(metrics, out)
    save_confusion_png(metrics, out.with_suffix(".png"), f"{Path(model).name} on {data_spec}")
    return metrics
