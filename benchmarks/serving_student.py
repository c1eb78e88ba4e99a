"""A MiniLM-L6 ESCI student cheap enough to make on a shared 2-core CPU: frozen encoder, trained head.

    nice -n 5 .venv/bin/python benchmarks/serving_student.py --data esci:PATH --out /tmp/esci-head

The classifier head (the only new weights of all-MiniLM-L6-v2 + a 3-class head) is fitted by logistic
regression on the pooled outputs of the training split; the encoder keeps its pretrained weights.
A fully fine-tuned student (`distillery finetune`) has the same graph and the same cost per pair, so
serving figures measured on this one hold for it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distillery.config import load_config
from distillery.data.schema import get_label_set, label_indices
from distillery.data.spec import load
from distillery.data.splits import split_pairs
from distillery.student.model import StudentMeta, build_student, encode


@torch.no_grad()
def pooled(model: torch.nn.Module, tokenizer: object, pairs: list, fields: list[str], max_length: int) -> np.ndarray:
    from tqdm import tqdm

    order = np.argsort([len(p.query) + len(p.item_text(fields)) for p in pairs], kind="stable")
    out = np.zeros((len(pairs), model.config.hidden_size), dtype=np.float32)
    for s in tqdm(range(0, len(order), 64), desc="encode"):
        idx = order[s:s + 64]
        b = encode(tokenizer, [pairs[i].query for i in idx], [pairs[i].item_text(fields) for i in idx], max_length)
        out[idx] = model.bert(**b).pooler_output.numpy()
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    from sklearn.linear_model import LogisticRegression

    cfg = load_config("demo")
    label_set = get_label_set(cfg.data.label_set)
    pairs, _ = load(args.data)
    splits = split_pairs(pairs, cfg.data)
    train = splits.seed + splits.logs
    tokenizer, model = build_student(cfg.student, label_set, seed=0)
    model.eval()
    x = pooled(model, tokenizer, train, cfg.student.item_fields, cfg.student.max_length)
    y = np.array(label_indices(train, label_set))
    clf = LogisticRegression(max_iter=2000, class_weight="balanced", C=1.0).fit(x, y)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(clf.coef_.astype(np.float32)))
        model.classifier.bias.copy_(torch.from_numpy(clf.intercept_.astype(np.float32)))
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    StudentMeta(label_set.name, list(label_set.classes), list(cfg.student.item_fields), cfg.student.max_length,
                method="frozen-encoder-head", extra={"train_pairs": len(train)}).save(args.out)
    print(f"head fitted on {len(train)} pairs (train accuracy {clf.score(x, y):.3f}); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
