"""The student baseline against the lexical floor, side by side on one query-grouped split.

    python benchmarks/student_baseline.py --data esci:../shared/data/esci-us/esci_us_dev.tsv.gz \
        --out runs/baseline [--set train.epochs=3 ...] [--variants default,no-class-weights,title-only]

Prints one Markdown table (held-out test macro-F1, accuracy, per-class F1, training wall time and
pairs/s) and writes each run's directory under ``--out``.  Variants are the levers that decide whether
a BERT cross-encoder beats the lexical model: class weighting against a macro metric, the item text.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from distillery.config import load_config, parse_overrides
from distillery.data.spec import load
from distillery.student.finetune import run_finetune

VARIANTS: dict[str, dict[str, dict[str, str]]] = {
    "default": {},
    "no-class-weights": {"train": {"class_weighting": "none"}},
    "title-only": {"student": {"item_fields": "title"}},
    "lr-5e-5": {"train": {"lr": "5e-5", "head_lr": "5e-5"}},
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--variants", default="default")
    args = ap.parse_args()
    pairs, _ = load(args.data)
    rows = []
    base = parse_overrides(args.set)
    lex = run_finetune(pairs, load_config(args.profile, overrides=base), Path(args.out) / "lexical",
                       method="lexical", data_name=args.data)
    rows.append(("lexical (BM25 + overlap, LR)", lex))
    for name in args.variants.split(","):
        overrides = {**base, **{k: {**base.get(k, {}), **v} for k, v in VARIANTS[name].items()}}
        cfg = load_config(args.profile, overrides=overrides)
        rows.append((f"MiniLM-L6 cross-encoder: {name}",
                     run_finetune(pairs, cfg, Path(args.out) / name, method="bert", data_name=args.data)))
    classes = rows[0][1]["test"]["classes"]
    print(f"\nsplit: {json.dumps(rows[0][1]['split'])}\n")
    print("| model | test macro-F1 | accuracy | " + " | ".join(f"F1 {c}" for c in classes)
          + " | wall s | train pairs/s |")
    print("|---|---|---|" + "---|" * len(classes) + "---|---|")
    for name, s in rows:
        t = s["test"]
        pcs = " | ".join(f"{t['per_class'][c]['f1']:.3f}" for c in classes)
        eps = s.get("train_examples_per_second")
        print(f"| {name} | {t['macro_f1']:.4f} | {t['accuracy']:.4f} | {pcs} | {s['wall_seconds']:.0f} | "
              f"{eps:.1f} |" if eps else f"| {name} | {t['macro_f1']:.4f} | {t['accuracy']:.4f} | {pcs} | "
              f"{s['wall_seconds']:.0f} | – |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
