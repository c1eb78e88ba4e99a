"""Contrastive Reasoning Self-Distillation (CRSD) and the label-distillation losses.

One shared encoder and classifier see two views of each pair: standard ``(query, item)`` and
reasoning-augmented ``(query, item, reasoning)``.  With ``h``, ``h_r`` the [CLS] vectors of the views
(architecture.md, paper Figure 3)::

    L = CE(f(h), y) + CE(f(h_r), y) + λ_align · align(h, h_r) + λ_batch · InfoNCE(h, h_r; τ)

``y`` is the teacher's hard label or its ``label_probs``.  Only the standard view exists at serving
time, so the saved model is a plain sequence classifier.  Every loss here is a ``LossFn`` for
:func:`distillery.student.trainer.fit`; the reasoning view is encoded inside the loss, from
``Example.extra["reasoning"]``, so the shared loop needs no change.  Whatever the teacher wrote there
(thousands of tokens, nothing, control characters) the view fits the encoder: the reasoning is cleaned and
given its own token budget, and a blank one leaves the row to the standard view alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from distillery.config import DistillConfig, StudentConfig
from distillery.student.trainer import Example, LossFn
from distillery.teacher.prompt import clean_text

MAX_POSITIONS = 512


CHARS_PER_TOKEN_BOUND = 64
"""A reasoning is cut to ``reasoning_tokens × this`` characters before tokenising (a WordPiece token is at
most a 100-character word, which tokenises to one [UNK]), so a runaway reasoning costs no tokeniser time."""


def reasoning_text(value: object, reasoning_tokens: int) -> str:
    """A teacher's reasoning as the reasoning view reads it: text (``None`` → empty), control characters and
    lone surrogates removed (a fast tokenizer refuses those), cut far beyond its token budget."""
    return clean_text(value)[: max(1, reasoning_tokens) * CHARS_PER_TOKEN_BOUND]


def has_reasoning(example: Example) -> bool:
    """Whether the example has a reasoning to build the second view from (empty or blank: it does not)."""
    return bool(clean_text(example.extra.get("reasoning")).strip())


def encode_reasoning_view(tokenizer: PreTrainedTokenizerBase, queries: list[str], items: list[str],
                          reasonings: list[str], max_length: int, reasoning_tokens: int,
                          max_positions: int = MAX_POSITIONS) -> dict[str, torch.Tensor]:
    """``[CLS] query [SEP] item [SEP] reasoning [SEP]``, padded to the longest row.

    Query and item keep exactly the tokens they have in the standard view (the item truncated to what
    ``max_length`` leaves after the query), and the reasoning gets its own budget after them: a long
    chain of thought never pushes the item out of the input.  No row is longer than ``max_positions``
    (the encoder's position table) whatever the reasoning; an empty reasoning adds nothing to the row.
    """
    q_ids = tokenizer([clean_text(q) for q in queries], add_special_tokens=False, verbose=False)["input_ids"]
    i_ids = tokenizer([clean_text(i) for i in items], add_special_tokens=False, verbose=False)["input_ids"]
    r_ids = tokenizer([reasoning_text(r, reasoning_tokens) for r in reasonings], add_special_tokens=False,
                      verbose=False)["input_ids"]
    cls, sep, pad = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id or 0
    limit = max(4, min(max_length, max_positions))
    rows: list[tuple[list[int], list[int]]] = []
    for q, it, r in zip(q_ids, i_ids, r_ids, strict=True):
        q = q[:limit - 3]
        it = it[:max(0, limit - len(q) - 3)]
        first = [cls, *q, sep]
        second = [*it, sep]
        r_budget = max(0, min(reasoning_tokens, max_positions - len(first) - len(second) - 1))
        if r_budget and r:
            second += [*r[:r_budget], sep]
        rows.append((first, second))
    width = max(len(a) + len(b) for a, b in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    types = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for n, (a, b) in enumerate(rows):
        ids[n, :len(a) + len(b)] = torch.tensor(a + b)
        types[n, len(a):len(a) + len(b)] = 1
        mask[n, :len(a) + len(b)] = 1
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}


def cls_forward(model: PreTrainedModel, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and the last layer's [CLS] vector of one forward pass."""
    out = model(**inputs, output_hidden_states=True)
    return out.logits, out.hidden_states[-1][:, 0]


def info_nce(h: torch.Tensor, h_r: torch.Tensor, tau: float) -> torch.Tensor:
    """Symmetric in-batch InfoNCE on cosine similarity: row ``i`` of each view is the positive of row ``i``
    of the other, every other row of the batch a negative; the mean of both directions."""
    z, z_r = F.normalize(h, dim=-1), F.normalize(h_r, dim=-1)
    sim = z @ z_r.T / tau
    target = torch.arange(len(h), device=h.device)
    return (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target)) / 2


def align_loss(h: torch.Tensor, h_r: torch.Tensor, kind: str) -> torch.Tensor:
    """``mse``: mean squared difference; ``cosine``: mean of 1 - cosine similarity."""
    if kind == "mse":
        return F.mse_loss(h, h_r)
    if kind == "cosine":
        return (1 - F.cosine_similarity(h, h_r, dim=-1)).mean()
    raise ValueError(f"distill.align={kind!r}: must be mse or cosine")


def target_ce(logits: torch.Tensor, batch: list[Example], soft: bool, weights: torch.Tensor | None
              ) -> torch.Tensor:
    """Class-weighted cross-entropy to hard targets, or to soft targets (``Example.soft``).

    The soft form ``-Σ_i Σ_c w_c p_ic log q_ic / Σ_i Σ_c w_c p_ic`` equals the weighted hard CE for one-hot
    ``p`` and, unweighted, the KL divergence to the teacher up to the teacher's (constant) entropy.
    """
    if soft:
        p = torch.tensor([e.soft if e.soft is not None else _one_hot(e, logits.shape[1]) for e in batch],
                         dtype=logits.dtype)
        w = p if weights is None else p * weights.to(logits.dtype)
        return -(w * F.log_softmax(logits, dim=-1)).sum() / w.sum().clamp_min(1e-12)
    return F.cross_entropy(logits, torch.tensor([e.target for e in batch]), weight=weights)


def _one_hot(e: Example, n: int) -> list[float]:
    return [1.0 if c == e.target else 0.0 for c in range(n)]


def label_loss_fn(soft: bool, weights: torch.Tensor | None) -> LossFn:
    """Baselines (b) and (c): CE to the teacher's hard labels, or to its ``label_probs`` (soft-label KD)."""

    def loss_fn(model: PreTrainedModel, batch: list[Example], inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return target_ce(model(**inputs).logits, batch, soft, weights)

    return loss_fn


def crsd_loss_fn(tokenizer: PreTrainedTokenizerBase, scfg: StudentConfig, dcfg: DistillConfig,
                 weights: torch.Tensor | None) -> LossFn:
    """The CRSD loss.  Rows without a reasoning (e.g. human-labelled seed pairs) join only the standard CE."""
    soft = dcfg.labels == "soft"

    def loss_fn(model: PreTrainedModel, batch: list[Example], inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        logits, h = cls_forward(model, inputs)
        loss = target_ce(logits, batch, soft, weights)
        idx = [i for i, e in enumerate(batch) if has_reasoning(e)]
        if not idx:
            return loss
        rows = [batch[i] for i in idx]
        positions = int(getattr(model.config, "max_position_embeddings", 0) or MAX_POSITIONS)
        r_inputs = encode_reasoning_view(tokenizer, [e.query for e in rows], [e.item for e in rows],
                                         [clean_text(e.extra["reasoning"]) for e in rows], scfg.max_length,
                                         dcfg.reasoning_tokens, min(MAX_POSITIONS, positions))
        logits_r, h_r = cls_forward(model, r_inputs)
        if dcfg.reasoning_view_ce:
            loss = loss + target_ce(logits_r, rows, soft, weights)
        h_std = h[torch.tensor(idx)]
        if dcfg.lambda_align > 0:
            loss = loss + dcfg.lambda_align * align_loss(h_std, h_r, dcfg.align)
        if dcfg.lambda_batch > 0 and len(idx) > 1:
            loss = loss + dcfg.lambda_batch * info_nce(h_std, h_r, dcfg.tau)
        return loss

    return loss_fn
