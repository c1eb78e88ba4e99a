"""Contrastive Reasoning Self-Distillation (CRSD) and the label-distillation losses.

One shared encoder and classifier see two views of each pair: standard ``(query, item)`` and
reasoning-augmented ``(query, item, reasoning)``.  With ``h``, ``h_r`` the [CLS] vectors of the views
(architecture.md, paper Figure 3)::

    L = CE(f(h), y) + CE(f(h_r), y) + λ_align · align(h, h_r) + λ_batch · InfoNCE(h, h_r; τ)

``y`` is the teacher's hard label or its ``label_probs``.  Only the standard view exists at serving
time, so the saved model is a plain sequence classifier.  Every loss here is a ``LossFn`` for
:func:`distillery.student.trainer.fit`; the reasoning view is encoded inside the loss, from
``Example.extra["reasoning"]``, so the shared loop needs no change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from distillery.config import DistillConfig, StudentConfig
from distillery.student.trainer import Example, LossFn

MAX_POSITIONS = 512


def encode_reasoning_view(tokenizer: PreTrainedTokenizerBase, queries: list[str], items: list[str],
                          reasonings: list[str], max_length: int, reasoning_tokens: int) -> dict[str, torch.Tensor]:
    """``[CLS] query [SEP] item [SEP] reasoning [SEP]``, padded to the longest row.

    Query and item keep exactly the tokens they have in the standard view (the item truncated to what
    ``max_length`` leaves after the query), and the reasoning gets its own budget after them: a long
    chain of thought never pushes the item out of the input.
    """
    q_ids = tokenizer(queries, add_special_tokens=False)["input_ids"]
    i_ids = tokenizer(items, add_special_tokens=False)["input_ids"]
    r_ids = tokenizer(reasonings, add_special_tokens=False)["input_ids"]
    cls, sep, pad = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id or 0
    rows: list[tuple[list[int], list[int]]] = []
    for q, it, r in zip(q_ids, i_ids, r_ids, strict=True):
        q = q[:max_length - 3]
        it = it[:max(0, max_length - len(q) - 3)]
        first = [cls, *q, sep]
        second = [*it, sep]
        r_budget = max(0, min(reasoning_tokens, MAX_POSITIONS - len(first) - len(second) - 1))
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
        idx = [i for i, e in enumerate(batch) if e.extra.get("reasoning")]
        if not idx:
            return loss
        rows = [batch[i] for i in idx]
        r_inputs = encode_reasoning_view(tokenizer, [e.query for e in rows], [e.item for e in rows],
                                         [str(e.extra["reasoning"]) for e in rows], scfg.max_length,
                                         dcfg.reasoning_tokens)
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
