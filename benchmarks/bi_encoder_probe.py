"""Why a fine-tuned MiniLM cross-encoder lost to the lexical floor: what the frozen checkpoint already knows.

    python benchmarks/bi_encoder_probe.py --data esci:../shared/data/esci-us/esci_us_dev.tsv.gz

all-MiniLM-L6-v2 is a sentence-embedding model: it was trained so that the cosine of the mean-pooled
embeddings of a query and a passage measures relevance.  This probe fits a class-balanced logistic
regression on the training queries (seed + logs, human labels) of the query-grouped split and prints the
held-out test macro-F1 of: that cosine alone, the lexical floor's features, and both together.  It is
the evidence behind ``train.similarity_aux`` (``distillery.student.similarity``).

With ``--folds K`` it runs the same three fits on each of ``benchmarks/cv.py``'s K query-grouped folds (train on
the fold's seed + logs, score its held-out development queries; the test split unused) and prints mean ± sd.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.preprocessing import StandardScaler
from transformers import AutoModel, AutoTokenizer

from distillery.config import load_config
from distillery.data.schema import Pair, get_label_set, label_indices
from distillery.data.spec import load
from distillery.data.splits import query_folds, split_pairs
from distillery.student.lexical import LexicalModel
from distillery.student.model import minilm_path
from distillery.student.similarity import mean_pooled


def cosines(encoder: torch.nn.Module, tokenizer: object, pairs: list[Pair], fields: list[str]) -> np.ndarray:
    """Bi-encoder cosine of query vs the student's item text, and vs the title alone."""
    q = mean_pooled(encoder, tokenizer, [p.query for p in pairs], 128, 64)  # type: ignore[arg-type]
    cols = [(q * mean_pooled(encoder, tokenizer, [p.item_text(f) for p in pairs], 128, 64)).sum(1)  # type: ignore[arg-type]
            for f in (fields, ["title"])]
    return torch.stack(cols, 1).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--folds", type=int, default=0, help="cross-validate over this many query folds instead")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = load_config("demo")
    pairs = load(a.data)[0]
    labels = get_label_set(cfg.data.label_set)
    tokenizer, encoder = AutoTokenizer.from_pretrained(minilm_path()), AutoModel.from_pretrained(minilm_path()).eval()
    plans = ([(f"fold {f.index}", f.splits) for f in query_folds(pairs, cfg.data, a.folds)] if a.folds
             else [("test split", split_pairs(pairs, cfg.data))])
    # The encoder is frozen, so a pair's cosines are the same in every fold: embed each pair once, not per fold.
    keys = [(p.query_id, p.item_id) for p in pairs]
    cos = dict(zip(keys, cosines(encoder, tokenizer, pairs, cfg.student.item_fields), strict=True))
    scores: dict[str, list[float]] = {}
    for where, splits in plans:
        train, test = splits.train, splits.test
        y_train, y_test = np.array(label_indices(train, labels)), np.array(label_indices(test, labels))
        cos_train, cos_test = (np.array([cos[(p.query_id, p.item_id)] for p in part]) for part in (train, test))
        lexical = LexicalModel(cfg.lexical, list(labels.classes)).fit(train, labels)
        lex_train, lex_test = lexical.features(train), lexical.features(test)
        print(f"{where}: train {len(train)} pairs, test {len(test)} pairs (held-out queries)", flush=True)
        for name, xtr, xte in (("bi-encoder cosine (frozen all-MiniLM-L6-v2)", cos_train, cos_test),
                               ("lexical floor features", lex_train, lex_test),
                               ("lexical + bi-encoder cosine", np.c_[lex_train, cos_train], np.c_[lex_test, cos_test])):
            scaler = StandardScaler().fit(xtr)
            clf = LogisticRegression(class_weight="balanced", max_iter=3000).fit(scaler.transform(xtr), y_train)
            scores.setdefault(name, []).append(f1_score(y_test, clf.predict(scaler.transform(xte)), average="macro"))
    print("\n| features (class-balanced logistic regression) | macro-F1 on held-out queries |\n|---|---|")
    for name, vals in scores.items():
        spread = f" ± {statistics.stdev(vals):.4f} ({', '.join(f'{v:.3f}' for v in vals)})" if len(vals) > 1 else ""
        print(f"| {name} | {statistics.mean(vals):.4f}{spread} |")


if __name__ == "__main__":
    main()
