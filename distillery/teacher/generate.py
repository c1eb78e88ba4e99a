"""Batched decoding with the KV cache, left padding, early exit per row, and the label distribution.

Why a loop of our own rather than ``model.generate``: it reads the teacher's distribution over the label
words at the exact step after ``Label:`` in each row (soft labels) without keeping every step's scores,
stops a row as soon as its label line ends, and drops finished rows from the cache so that the batch
shrinks instead of decoding padding.  Per step the Python work is a handful of tensor operations; the
only per-row Python runs on the rare steps where a row emits a token ending in ``:``.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from distillery.data.schema import LabelSet

LABEL_CUE = "label:"


@dataclass
class Generation:
    """One row's output: generated token ids (stop token excluded), prompt length, label distribution."""

    tokens: list[int]
    prompt_tokens: int
    label_probs: list[float] | None
    steps: int = 0
    """Decoding steps spent on the row (its tokens plus the stop token, if it emitted one)."""
    forced_label: bool = False


class Decoder:
    """Greedy or sampled decoding for one model, tokenizer and label set."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, label_set: LabelSet) -> None:
        self.model, self.tok, self.label_set = model, tokenizer, label_set
        vocab = len(tokenizer)
        pieces = tokenizer.convert_ids_to_tokens(list(range(vocab)))
        texts = [tokenizer.convert_tokens_to_string([p]) if p is not None else "" for p in pieces]
        self.newline = torch.tensor(["\n" in t for t in texts], dtype=torch.bool)
        self.colon = torch.tensor([t.rstrip().endswith(":") for t in texts], dtype=torch.bool)
        stops = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>"),
                 tokenizer.convert_tokens_to_ids("<|endoftext|>")}
        self.stop = torch.zeros(vocab, dtype=torch.bool)
        self.stop[[s for s in stops if isinstance(s, int) and 0 <= s < vocab]] = True
        self.class_tokens = self._label_first_tokens()
        self.suffix_ids: list[int] = tokenizer("\nLabel:", add_special_tokens=False)["input_ids"]
        # transformers 5 renamed ``past_key_values`` to ``cache``; other models may still use the old name.
        params = inspect.signature(model.forward).parameters
        self.cache_kw = "cache" if "cache" in params else "past_key_values"
        self._prefix: tuple[str, tuple[list[int], DynamicCache]] | None = None
        # Book-keeping stays on the CPU; only the model's inputs go to its device and last logits come back.
        self.device = next(model.parameters()).device

    def _label_first_tokens(self) -> list[list[int]]:
        """First token of each class word, with and without a leading space; they must differ across classes."""
        groups: list[list[int]] = []
        for c in self.label_set.classes:
            ids = {self.tok(v, add_special_tokens=False)["input_ids"][0] for v in (f" {c}", c)}
            groups.append(sorted(ids))
        flat = [i for g in groups for i in g]
        if len(flat) != len(set(flat)):
            raise ValueError(f"the tokenizer starts two of the label words {self.label_set.classes} with the same "
                             "token, so label_probs cannot be read at the label position")
        return groups

    def _class_probs(self, logits: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(logits.float(), dim=-1)
        per_class = torch.stack([p[:, g].sum(-1) for g in self.class_tokens], dim=-1)
        return per_class / per_class.sum(-1, keepdim=True).clamp_min(1e-30)

    def _prefix_cache(self, prefix: str) -> tuple[list[int], DynamicCache] | None:
        """KV cache of the prompt prefix every prompt shares (the system message), computed once."""
        if self._prefix is not None and self._prefix[0] == prefix:
            return self._prefix[1]
        ids: list[int] = self.tok(prefix, add_special_tokens=False)["input_ids"]
        cache = DynamicCache()
        self._forward(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), torch.arange(len(ids))[None],
                      cache)
        self._prefix = (prefix, (ids, cache))
        return ids, cache

    def _prefill(self, prompts: list[str], prefix: str) -> tuple[DynamicCache, torch.Tensor, torch.Tensor,
                                                                   torch.Tensor, list[list[int]]]:
        """Run the prompts through the model: (cache, mask, next positions, last logits, prompt ids per row)."""
        n = len(prompts)
        shared = self._prefix_cache(prefix) if prefix and all(p.startswith(prefix) for p in prompts) else None
        pre_ids, cache = (shared[0], copy.deepcopy(shared[1])) if shared else ([], DynamicCache())
        if shared:
            cache.batch_repeat_interleave(n)
        enc = self.tok([p[len(prefix):] if shared else p for p in prompts], padding=True, return_tensors="pt",
                       add_special_tokens=False)
        mask = torch.cat([torch.ones(n, len(pre_ids), dtype=torch.long), enc["attention_mask"]], dim=1)
        pos = (mask.cumsum(-1) - 1).clamp_min(0)
        logits = self._forward(enc["input_ids"], mask, pos[:, len(pre_ids):], cache)
        rows = [pre_ids + ids[m.bool()].tolist()
                for ids, m in zip(enc["input_ids"], enc["attention_mask"], strict=True)]
        return cache, mask, pos[:, -1] + 1, logits, rows

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: DynamicCache | None
                 ) -> torch.Tensor:
        """Last-position logits (float32, on the CPU) of one forward pass on the model's device."""
        d = self.device
        kw = {self.cache_kw: cache, "use_cache": True} if cache is not None else {}
        out = self.model(input_ids=ids.to(d), attention_mask=mask.to(d), position_ids=pos.to(d), logits_to_keep=1,
                         **kw)
        return out.logits[:, -1].float().cpu()

    @torch.inference_mode()
    def generate(self, prompts: list[str], max_new_tokens: int, temperature: float = 0.0,
                 generator: torch.Generator | None = None, prefix: str = "") -> list[Generation]:
        """Decode every prompt in one batch; ``temperature=0`` is greedy.

        ``prefix``: text every prompt starts with and that ends at a special token (tokenised on its own
        exactly as inside the prompt); its KV cache is computed once and shared by every row.
        """
        n = len(prompts)
        cache, mask, next_pos, logits, prompt_ids = self._prefill(prompts, prefix)
        tokens = torch.zeros(n, max_new_tokens, dtype=torch.long)
        lengths = torch.full((n,), max_new_tokens, dtype=torch.long)
        steps = torch.full((n,), max_new_tokens, dtype=torch.long)
        probs: list[list[float] | None] = [None] * n
        rows = torch.arange(n)          # original index of each cache row
        cue = torch.zeros(n, dtype=torch.bool)    # the row's last token completed "Label:"
        seen = torch.zeros(n, dtype=torch.bool)   # label position already read
        for step in range(max_new_tokens):
            if bool(cue.any()):
                idx = cue.nonzero().flatten()
                for r, pr in zip(rows[idx].tolist(), self._class_probs(logits[idx]).tolist(), strict=True):
                    probs[r] = pr
                seen |= cue
            nxt = self._pick(logits, temperature, generator)
            tokens[rows, step] = nxt
            done = self.stop[nxt] | (seen & ~cue & self.newline[nxt])
            cue = self._cue(tokens, rows, step, nxt) & ~seen
            lengths[rows[done]] = step + (~self.stop[nxt[done]]).long()
            steps[rows[done]] = step + 1
            keep = ~done
            if not bool(keep.any()) or step == max_new_tokens - 1:
                break
            if not bool(keep.all()):
                kidx = keep.nonzero().flatten()
                cache.batch_select_indices(kidx.to(self.device))
                rows, mask, next_pos, nxt, cue, seen = (t[kidx] for t in (rows, mask, next_pos, nxt, cue, seen))
                logits = logits[kidx]
            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
            logits, next_pos = self._forward(nxt[:, None], mask, next_pos[:, None], cache), next_pos + 1
        gens = [Generation(tokens[i, : lengths[i]].tolist(), len(prompt_ids[i]), probs[i], int(steps[i]))
                for i in range(n)]
        self._force_missing(prompt_ids, gens)
        return gens

    def _pick(self, logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
        if temperature <= 0:
            return logits.argmax(-1)
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

    def _force_missing(self, prompt_ids: list[list[int]], gens: list[Generation]) -> None:
        """Rows that never wrote ``Label:`` get the distribution after appending it (``forced_label``)."""
        todo = [i for i, g in enumerate(gens) if g.label_probs is None]
        if not todo:
            return
        seqs = [prompt_ids[i] + gens[i].tokens + self.suffix_ids for i in todo]
        width = max(len(s) for s in seqs)
        pad = self.tok.pad_token_id or 0
        batch = torch.tensor([[pad] * (width - len(s)) + s for s in seqs])
        m = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs])
        pos = (m.cumsum(-1) - 1).clamp_min(0)
        logits = self._forward(batch, m, pos, None)
        for i, pr in zip(todo, self._class_probs(logits).tolist(), strict=True):
            gens[i].label_probs, gens[i].forced_label = pr, True
