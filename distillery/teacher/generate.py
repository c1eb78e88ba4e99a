"""Batched decoding with the KV cache, left padding, early exit per row, and the label distribution.

Why a loop of our own rather than ``model.generate``: it reads the teacher's distribution over the label
words at the exact step after ``Label:`` in each row (soft labels) without keeping every step's scores,
stops a row as soon as its label line ends, and drops finished rows from the cache (a quarter of the batch
at a time) so that the batch shrinks instead of decoding padding.  Per step the Python work is a handful of
tensor operations; the only per-row Python runs on the rare steps where a row emits a token ending in ``:``.
"""

from __future__ import annotations

import copy
import inspect
import time
from dataclasses import dataclass

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import DynamicLayer

from distillery.data.schema import LabelSet
from distillery.teacher import prefix_attention
from distillery.teacher.engine_labels import LABEL_CUE, class_first_tokens, forced_suffix_ids, stop_ids
from distillery.teacher.prefix_attention import SharedPrefix, shared_prefix

COMPACT_SHARE = 4
"""Finished rows leave the batch once they are at least 1/COMPACT_SHARE of it."""
PREFILL_TOKENS = 2048
"""Padded prompt tokens per prefill forward on a CPU: a batch of 64 prompts of 320 tokens in one forward ran
at 2/3 the speed of 8 at a time (the activations outgrow the caches); the rows' KV caches are then stacked."""


def cache_keyword(model: PreTrainedModel) -> str:
    """The forward argument that takes the KV cache: transformers 5 renamed ``past_key_values`` to ``cache``, and
    other models may still use the old name."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


class ReservedLayer(DynamicLayer):
    """A KV-cache layer that writes each step into spare room instead of concatenating.

    ``DynamicLayer`` re-allocates and copies the whole cache at every decoding step (``torch.cat``): at batch 32
    and 300 prompt tokens that copy took half of SmolLM2's step time on one core.  Here keys and values live in
    a buffer with room to spare, ``keys``/``values`` are views of its filled part, and the buffer grows by half
    its length when full, so a step copies only the new token's keys and values.
    """

    _k: torch.Tensor | None = None
    _v: torch.Tensor | None = None
    _len: int = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n, new = self._len, key_states.shape[-2]
        if self._k is None or n + new > self._k.shape[-2]:
            self._grow(key_states, value_states, n + new)
        assert self._k is not None and self._v is not None
        self._k[:, :, n:n + new] = key_states
        self._v[:, :, n:n + new] = value_states
        self._len = n + new
        self.keys, self.values = self._k[:, :, :self._len], self._v[:, :, :self._len]
        return self.keys, self.values

    def _grow(self, key_states: torch.Tensor, value_states: torch.Tensor, needed: int) -> None:
        cap = needed + max(64, needed // 2)
        k = key_states.new_empty((*key_states.shape[:2], cap, key_states.shape[-1]))
        v = value_states.new_empty((*value_states.shape[:2], cap, value_states.shape[-1]))
        if self._k is not None and self._v is not None and self._len:
            k[:, :, :self._len] = self._k[:, :, :self._len]
            v[:, :, :self._len] = self._v[:, :, :self._len]
        self._k, self._v = k, v

    def filled(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values written so far, ``(batch, kv_heads, length, head_dim)`` views of the buffers."""
        assert self._k is not None and self._v is not None
        return self._k[:, :, :self._len], self._v[:, :, :self._len]

    def _reindex(self, k: torch.Tensor, v: torch.Tensor) -> None:
        self._k, self._v = k, v
        self.keys, self.values = k[:, :, :self._len], v[:, :, :self._len]

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self._len and self._k is not None and self._v is not None:
            self._reindex(self._k.repeat_interleave(repeats, dim=0), self._v.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self._len and self._k is not None and self._v is not None:
            self._reindex(self._k[indices], self._v[indices])

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("the decoder never crops its cache")

    def reset(self) -> None:
        self._k = self._v = None
        self._len = 0
        super().reset()


class ReservedCache(DynamicCache):
    """``DynamicCache`` made of :class:`ReservedLayer` (the model code sees an ordinary dynamic cache)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer_class_to_replicate = ReservedLayer

    @classmethod
    def stack(cls, parts: list[DynamicCache]) -> ReservedCache:
        """One cache holding the rows of ``parts`` (same length each) in order, with room to grow."""
        out = cls()
        for layers in zip(*(p.layers for p in parts), strict=True):
            layer = ReservedLayer()
            layer.update(torch.cat([x.keys for x in layers]), torch.cat([x.values for x in layers]))
            out.layers.append(layer)
        return out


@dataclass
class Generation:
    """One row's output: generated token ids (stop token excluded), prompt length, label distribution."""

    tokens: list[int]
    prompt_tokens: int
    label_probs: list[float] | None
    steps: int = 0
    """Decoding steps spent on the row (its tokens plus the stop token, if it emitted one)."""
    forced_label: bool = False


@dataclass
class DecodeTiming:
    """Where generation time goes, accumulated over calls (the annotation throughput report reads it)."""

    prefill_seconds: float = 0.0
    prompt_tokens: int = 0
    """Prompt tokens run through prefill (the shared prefix counted once per call)."""
    decode_seconds: float = 0.0
    decode_tokens: int = 0
    """Tokens fed through the decoding steps (one per live row per step, label-forcing tokens included)."""
    steps: int = 0


class Decoder:
    """Greedy or sampled decoding for one model, tokenizer and label set."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, label_set: LabelSet) -> None:
        self.model, self.tok, self.label_set = model, tokenizer, label_set
        vocab = len(tokenizer)
        pieces = tokenizer.convert_ids_to_tokens(list(range(vocab)))
        texts = [tokenizer.convert_tokens_to_string([p]) if p is not None else "" for p in pieces]
        self.newline = torch.tensor(["\n" in t for t in texts], dtype=torch.bool)
        self.colon = torch.tensor([t.rstrip().endswith(":") for t in texts], dtype=torch.bool)
        self.stop = torch.zeros(vocab, dtype=torch.bool)
        self.stop[sorted(stop_ids(tokenizer))] = True
        # The engine backends read labels with the same helpers (distillery.teacher.engine_labels): one rule.
        self.class_tokens = class_first_tokens(tokenizer, label_set)
        self.suffix_ids = forced_suffix_ids(tokenizer)
        self.cache_kw = cache_keyword(model)
        # (prefix text, (its ids, its KV cache), the same keys/values as one shared copy for the cascade)
        self._prefix: tuple[str, tuple[list[int], DynamicCache], SharedPrefix] | None = None
        # Book-keeping stays on the CPU; only the model's inputs go to its device and last logits come back.
        self.device = next(model.parameters()).device
        self.timing = DecodeTiming()
        self.cascade = self.device.type == "cpu" and prefix_attention.install(model)

    def _class_probs(self, logits: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(logits.float(), dim=-1)
        per_class = torch.stack([p[:, g].sum(-1) for g in self.class_tokens], dim=-1)
        return per_class / per_class.sum(-1, keepdim=True).clamp_min(1e-30)

    def _prefix_cache(self, prefix: str) -> tuple[list[int], DynamicCache] | None:
        """KV cache of the prompt prefix every prompt shares (the system message), computed once."""
        if self._prefix is not None and self._prefix[0] == prefix:
            return self._prefix[1]
        ids: list[int] = self.tok(prefix, add_special_tokens=False)["input_ids"]
        cache = ReservedCache()
        self._forward(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), torch.arange(len(ids))[None],
                      cache)
        layers = [x.filled() for x in cache.layers if isinstance(x, ReservedLayer)]
        self._prefix = (prefix, (ids, cache), SharedPrefix([k[0].contiguous() for k, _ in layers],
                                                           [v[0].contiguous() for _, v in layers]))
        return ids, cache

    def _prefill(self, prompts: list[str], prefix: str, shared: tuple[list[int], DynamicCache] | None
                 ) -> tuple[DynamicCache, torch.Tensor, torch.Tensor, torch.Tensor, list[list[int]]]:
        """Run the prompts through the model: (cache, mask, next positions, last logits, prompt ids per row)."""
        n = len(prompts)
        pre_ids = shared[0] if shared else []
        enc = self.tok([p[len(prefix):] if shared else p for p in prompts], padding=True, return_tensors="pt",
                       add_special_tokens=False)
        mask = torch.cat([torch.ones(n, len(pre_ids), dtype=torch.long), enc["attention_mask"]], dim=1)
        pos = (mask.cumsum(-1) - 1).clamp_min(0)
        width = enc["input_ids"].shape[1]
        chunk = n if self.device.type != "cpu" else max(1, PREFILL_TOKENS // max(1, width))
        parts, outs = [], []
        for i in range(0, n, chunk):
            part = copy.deepcopy(shared[1]) if shared else ReservedCache()
            if shared:
                part.batch_repeat_interleave(min(chunk, n - i))
            outs.append(self._forward(enc["input_ids"][i:i + chunk], mask[i:i + chunk],
                                      pos[i:i + chunk, len(pre_ids):], part))
            parts.append(part)
        cache, logits = (parts[0] if len(parts) == 1 else ReservedCache.stack(parts)), torch.cat(outs)
        rows = [pre_ids + ids[m.bool()].tolist()
                for ids, m in zip(enc["input_ids"], enc["attention_mask"], strict=True)]
        return cache, mask, pos[:, -1] + 1, logits, rows

    def _shared_prefix(self, shared: tuple[list[int], DynamicCache] | None) -> SharedPrefix | None:
        """The prefix's keys and values for the cascade attention (None: no shared prefix, or not installed)."""
        if shared is None or not self.cascade or self._prefix is None:
            return None
        return self._prefix[2]

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: DynamicCache | None
                 ) -> torch.Tensor:
        """Last-position logits (on the CPU, in the model's dtype) of one forward pass on the model's device.

        Not converted to float32: greedy picks the same argmax from the bf16 values, and only the few rows whose
        label distribution is read (or that are sampled) are converted; at batch 64 the conversion and its copies
        were a tenth of a decoding step."""
        d = self.device
        kw = {self.cache_kw: cache, "use_cache": True} if cache is not None else {}
        out = self.model(input_ids=ids.to(d), attention_mask=mask.to(d), position_ids=pos.to(d), logits_to_keep=1,
                         **kw)
        return out.logits[:, -1].cpu()

    @torch.inference_mode()
    def generate(self, prompts: list[str], max_new_tokens: int, temperature: float = 0.0,
                 generator: torch.Generator | None = None, prefix: str = "") -> list[Generation]:
        """Decode every prompt in one batch; ``temperature=0`` is greedy.

        ``prefix``: text every prompt starts with and that ends at a special token (tokenised on its own
        exactly as inside the prompt); its KV cache is computed once and shared by every row.

        A row that ends (stop token or ``max_new_tokens``) without having written ``Label:`` stays in the batch
        for a few more steps that feed ``\nLabel:`` through its cache; the distribution after it is the row's
        ``label_probs`` (``forced_label``).  This costs len("\nLabel:") steps instead of a second prefill.
        """
        n = len(prompts)
        t0 = time.perf_counter()
        shared = self._prefix_cache(prefix) if prefix and all(p.startswith(prefix) for p in prompts) else None
        cache, mask, next_pos, logits, prompt_ids = self._prefill(prompts, prefix, shared)
        t1 = time.perf_counter()
        self.timing.prefill_seconds += t1 - t0
        self.timing.prompt_tokens += sum(len(p) for p in prompt_ids)
        tokens = torch.zeros(n, max_new_tokens, dtype=torch.long)
        lengths = torch.full((n,), max_new_tokens, dtype=torch.long)
        steps = torch.full((n,), max_new_tokens, dtype=torch.long)
        probs: list[list[float] | None] = [None] * n
        forced = [False] * n
        rows = torch.arange(n)          # original index of each cache row
        cue = torch.zeros(n, dtype=torch.bool)    # the row's last token completed "Label:"
        seen = torch.zeros(n, dtype=torch.bool)   # label position already read
        tail = len(self.suffix_ids)
        queue = torch.zeros(n, tail + 1, dtype=torch.long)  # tokens a finished, unlabelled row still feeds
        qlen = torch.zeros(n, dtype=torch.long)
        qpos = torch.full((n,), -1, dtype=torch.long)       # -1: the row is generating
        qforced = torch.zeros(n, dtype=torch.bool)
        dead = torch.zeros(n, dtype=torch.bool)  # finished rows still in the cache, fed padding until compacted
        step = 0
        # While decoding, one-token queries read the shared prefix from its single copy (prefix_attention).
        with shared_prefix(self._shared_prefix(shared)):
            while len(rows):
                if bool(cue.any()):
                    idx = cue.nonzero().flatten()
                    for r, pr in zip(rows[idx].tolist(), self._class_probs(logits[idx]).tolist(), strict=True):
                        probs[r] = pr
                    seen |= cue
                # queued rows whose last queued token went in: read the label
                fin = ~dead & (qpos >= 0) & (qpos == qlen)
                if bool(fin.any()):
                    idx = fin.nonzero().flatten()
                    for r, f, pr in zip(rows[idx].tolist(), qforced[idx].tolist(),
                                        self._class_probs(logits[idx]).tolist(), strict=True):
                        probs[r], forced[r] = pr, f
                feed = torch.zeros(len(rows), dtype=torch.long)
                done = fin.clone()
                gen = (~dead & (qpos < 0)).nonzero().flatten()
                fresh, cue = cue, torch.zeros(len(rows), dtype=torch.bool)  # fresh: the label word comes now
                if len(gen):
                    feed[gen], done[gen], cue[gen] = self._step(
                        logits if len(gen) == len(rows) else logits[gen], rows[gen], seen[gen], fresh[gen], tokens,
                        lengths, steps, step, max_new_tokens, temperature, generator, (queue, qlen, qpos, qforced),
                        gen)
                    step += 1
                queued = ~dead & (qpos >= 0) & ~fin
                if bool(queued.any()):
                    idx = queued.nonzero().flatten()
                    feed[idx] = queue[idx, qpos[idx]]
                    qpos[idx] += 1
                dead |= done
                if bool(dead.all()):
                    break
                # Dropping rows copies the whole cache, so finished rows ride along (fed padding, outputs ignored)
                # until a quarter of the batch has finished; dropping at every finish cost more than decoding.
                if int(dead.sum()) * COMPACT_SHARE >= len(rows):
                    kidx = (~dead).nonzero().flatten()
                    cache.batch_select_indices(kidx.to(self.device))
                    rows, mask, next_pos, feed, cue, seen, queue, qlen, qpos, qforced, dead = (
                        t[kidx] for t in (rows, mask, next_pos, feed, cue, seen, queue, qlen, qpos, qforced, dead))
                mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
                logits, next_pos = self._forward(feed[:, None], mask, next_pos[:, None], cache), next_pos + 1
                self.timing.decode_tokens += int((~dead).sum())
                self.timing.steps += 1
        self.timing.decode_seconds += time.perf_counter() - t1
        return [Generation(tokens[i, : lengths[i]].tolist(), len(prompt_ids[i]), probs[i], int(steps[i]), forced[i])
                for i in range(n)]

    def _step(self, logits: torch.Tensor, rows: torch.Tensor, seen: torch.Tensor, fresh: torch.Tensor,
              tokens: torch.Tensor, lengths: torch.Tensor, steps: torch.Tensor, step: int, max_new_tokens: int,
              temperature: float, generator: torch.Generator | None, q: tuple[torch.Tensor, ...], at: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One decoding step of the generating rows: (token to feed, row done, row now ends with ``Label:``).

        A row ends at a stop token, or at a newline once its label was read (not on the step right after
        ``Label:``, ``fresh``).  Rows that end without a label get their remaining input queued in ``q`` (at
        cache rows ``at``)."""
        queue, qlen, qpos, qforced = q
        nxt = self._pick(logits, temperature, generator)
        tokens[rows, step] = nxt
        stop = self.stop[nxt]
        ended = stop | (seen & ~fresh & self.newline[nxt])
        cue = self._cue(tokens, rows, step, nxt) & ~seen
        lengths[rows[ended]] = step + (~stop[ended]).long()
        steps[rows[ended]] = step + 1
        last = step == max_new_tokens - 1
        need = ~seen & (ended | last)  # finished without a label read: queue the rest of the input
        for j in need.nonzero().flatten().tolist():
            seq = [] if bool(stop[j]) else [int(nxt[j])]
            if not bool(cue[j]):
                seq += self.suffix_ids
            c = int(at[j])
            queue[c, :len(seq)] = torch.tensor(seq)
            qlen[c], qpos[c], qforced[c] = len(seq), 0, not bool(cue[j])
        done = (ended | last) & ~need
        return nxt, done, cue & ~need

    def _pick(self, logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
        if temperature <= 0:
            # max(-1).indices, not argmax: the same first maximal index, and 3-4x faster on bf16 CPU logits
            # (argmax over 128 x 49,152 bf16 logits was 6% of a decoding step).
            return logits.max(-1).indices
        p = torch.softmax(logits.float() / temperature, dim=-1)
        return torch.multinomial(p, 1, generator=generator).flatten()

    def _cue(self, tokens: torch.Tensor, rows: torch.Tensor, step: int, nxt: torch.Tensor) -> torch.Tensor:
        """Rows whose text now ends with ``Label:`` (checked by decoding only where the token ends in ':')."""
        hit = self.colon[nxt]
        if bool(hit.any()):
            for j in hit.nonzero().flatten().tolist():
                tail = tokens[rows[j], max(0, step - 5): step + 1].tolist()
                if not str(self.tok.decode(tail)).rstrip().lower().endswith(LABEL_CUE):
                    hit[j] = False
        return hit
