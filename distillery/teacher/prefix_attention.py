"""Decode attention that reads the shared prompt prefix once per step instead of once per row.

Every annotation prompt starts with the same system message (77 SmolLM2 tokens, about 40% of a row's keys
and values by the end of an answer).  The decoder computes its KV cache once and copies it into every row;
SDPA then streams those identical copies from memory at every decoding step, and on one CPU core a decoding
step at batch 128 spent 39% of its time in attention, bound by that memory traffic.

Here, while :func:`shared_prefix` is active, a one-token query attends to the prefix through one batched
matmul over the single shared copy, to the row's own keys (after the prefix) through SDPA's flash kernel,
and the two partial softmaxes are merged by their log-sum-exp (the "cascade" of FlashInfer).  The per-row
copies stay in the cache, unread, so prefill, masks, positions and row dropping are unchanged.  Anything
else (prefill, training, a GPU, no active prefix) goes to transformers' own SDPA function unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "distillery_prefix_sdpa"


@dataclass(frozen=True)
class SharedPrefix:
    """The prefix's keys and values per layer, ``(kv_heads, prefix_len, head_dim)``, one copy for all rows."""

    keys: Sequence[torch.Tensor]
    values: Sequence[torch.Tensor]

    @property
    def length(self) -> int:
        return int(self.keys[0].shape[-2])


_ACTIVE: ContextVar[SharedPrefix | None] = ContextVar("distillery_shared_prefix", default=None)


@contextmanager
def shared_prefix(prefix: SharedPrefix | None) -> Iterator[None]:
    """Decode with ``prefix`` read from its shared copy (``None``: plain SDPA) inside the block."""
    token = _ACTIVE.set(prefix)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def prefix_sdpa(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                **kwargs: Any) -> tuple[torch.Tensor, None]:
    """``sdpa_attention_forward`` with the cascade for one-token CPU queries while a shared prefix is active."""
    pre = _ACTIVE.get()
    layer = getattr(module, "layer_idx", None)
    if (pre is None or layer is None or query.shape[2] != 1 or dropout or query.device.type != "cpu"
            or key.shape[2] <= pre.length or kwargs.get("position_bias") is not None
            or (attention_mask is not None and attention_mask.dtype != torch.bool)):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    return _cascade(query, key, value, attention_mask, pre.keys[layer], pre.values[layer], scaling), None


def _cascade(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None,
             pk: torch.Tensor, pv: torch.Tensor, scaling: float | None) -> torch.Tensor:
    """Attention output ``(batch, 1, heads, head_dim)`` of one query token over [shared prefix | own keys]."""
    b, heads, _, d = query.shape
    kv_heads, p = key.shape[1], pk.shape[-2]
    scale = scaling if scaling is not None else d ** -0.5
    q = query.reshape(b, kv_heads, heads // kv_heads, d)  # query heads grouped under their key/value head
    # The prefix: one (kv_heads, rows x group, prefix) matmul reads the shared keys once for the whole batch.
    qh = q.transpose(0, 1).reshape(kv_heads, -1, d)
    s = torch.bmm(qh, pk.transpose(1, 2)).float() * scale
    lse_p = torch.logsumexp(s, -1)
    out_p = torch.bmm(torch.exp(s - lse_p[..., None]).to(pv.dtype), pv).float()
    out_p = out_p.reshape(kv_heads, b, -1, d).transpose(0, 1)
    lse_p = lse_p.reshape(kv_heads, b, -1).transpose(0, 1)
    # The row's own keys (prompt after the prefix, left padding, generated tokens): the flash kernel, which
    # also returns the log-sum-exp.  Every row has at least its newest token here, so no row is all masked.
    own = None if mask is None else torch.zeros(mask[..., p:].shape, dtype=query.dtype).masked_fill_(
        ~mask[..., p:], float("-inf"))
    out_r, lse_r = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        q, key[:, :, p:], value[:, :, p:], attn_mask=own, scale=scale)
    lse = torch.logaddexp(lse_p, lse_r.float())
    out = out_p * torch.exp(lse_p - lse)[..., None] + out_r.float() * torch.exp(lse_r.float() - lse)[..., None]
    return out.to(query.dtype).reshape(b, heads, 1, d).transpose(1, 2)


def install(model: PreTrainedModel) -> bool:
    """Route ``model``'s attention through :func:`prefix_sdpa` when it uses SDPA; True when it does."""
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) != "sdpa" or not hasattr(model, "set_attn_implementation"):
        return False
    AttentionInterface.register(NAME, prefix_sdpa)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    model.set_attn_implementation(NAME)
    return getattr(model.config, "_attn_implementation", None) == NAME
