"""Keep what a sentence-embedding checkpoint knows while it learns to be a cross-encoder.

all-MiniLM-L6-v2 was trained so that the cosine of the mean-pooled embeddings of a query and a passage
measures their relevance; on ESCI that cosine alone, through a logistic regression, scores about as well
as the lexical floor.  Fine-tuning the checkpoint as a cross-encoder on a few thousand pairs starts its
[CLS] head from nothing and throws that knowledge away.  The auxiliary loss here makes the pooled pair
vector also predict the starting encoder's bi-encoder cosine for the pair: a regulariser that costs one
linear head during training and nothing at serving (the head is not saved).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase


@torch.no_grad()
def mean_pooled(encoder: nn.Module, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int,
                batch_size: int) -> torch.Tensor:
    """L2-normalised mean-pooled last hidden states (sentence-transformers' pooling), one row per text."""
    out = []
    for start in range(0, len(texts), batch_size):
        b = tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt")
        h = encoder(**b).last_hidden_state
        mask = b["attention_mask"].unsqueeze(-1).to(h.dtype)
        out.append(nn.functional.normalize((h * mask).sum(1) / mask.sum(1).clamp(min=1), dim=-1))
    return torch.cat(out) if out else torch.zeros(0)


def similarity_targets(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, queries: Sequence[str],
                       items: Sequence[str], max_length: int, batch_size: int = 64) -> torch.Tensor:
    """Bi-encoder cosine of each (query, item) under ``model``'s encoder as it is now (call before training)."""
    encoder = model.base_model
    was_training = encoder.training
    encoder.eval()
    try:
        q = mean_pooled(encoder, tokenizer, queries, max_length, batch_size)
        it = mean_pooled(encoder, tokenizer, items, max_length, batch_size)
    finally:
        encoder.train(was_training)
    return (q * it).sum(-1)


class PooledCapture:
    """Records the pooled pair vector (the classifier's input) of the first forward pass of each step.

    Every loss function runs the standard view of the whole batch first (CRSD then runs the reasoning
    view), so the first capture of a step holds one row per example, in batch order.
    """

    def __init__(self, model: PreTrainedModel) -> None:
        pooler = getattr(model.base_model, "pooler", None)
        if pooler is None:
            raise ValueError(f"{type(model).__name__}: no pooler to read the pair vector from "
                             "(train.similarity_aux needs a BERT-style classifier)")
        self.first: torch.Tensor | None = None
        self._handle = pooler.register_forward_hook(self._hook)

    def _hook(self, _module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        if self.first is None:
            self.first = output

    def take(self, rows: int) -> torch.Tensor:
        pooled, self.first = self.first, None
        if pooled is None or pooled.shape[0] != rows:
            raise RuntimeError(f"similarity aux: expected the batch's standard view first ({rows} rows), got "
                               f"{None if pooled is None else tuple(pooled.shape)}")
        return pooled

    def reset(self) -> None:
        self.first = None

    def close(self) -> None:
        self._handle.remove()
