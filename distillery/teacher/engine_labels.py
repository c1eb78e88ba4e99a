"""Label distributions from an inference engine's top logprobs, with the local decoder's rules.

An engine (an OpenAI-compatible server, vLLM) returns per generated token its top-K logprobs. This module
holds :class:`distillery.teacher.generate.Decoder`'s rules (the decoder imports its cue, stop tokens and class
tokens from here) and applies them to such a completion: the label position is the token after the model's own
first ``Label:``; the answer ends at the first newline after the label word (the decoder stops there); an
answer that wrote no ``Label:`` gets ``"\\nLabel:"`` appended and one more token read (``forced_label``).
Class probabilities are the summed probabilities of each class word's first tokens (with and without a leading
space), renormalised over the classes, exactly as the decoder computes them from the full softmax — here from
the top-K only, so a class absent from it gets the floor::

    from distillery.teacher.engine_labels import label_probs_from_top

    label_probs_from_top({11: -0.1, 12: -2.5, 99: -4.0}, [[11], [12], [13]])   # (probs, covered=False)
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from distillery.data.schema import LabelSet

LABEL_CUE = "label:"
"""What ends the answer's label cue (lower-cased); the local decoder and the engine backends share it."""
TOKEN_ID = "token_id:"
"""vLLM's ``return_tokens_as_token_ids`` token form (``token_id:N``): written by ``distillery teacher serve``,
read by the ``openai:`` backend."""
CUE_TOKENS = 6
"""The decoder looks for ``Label:`` in the last six tokens' text."""


def label_probs_from_top(top: Mapping[Hashable, float], classes: Sequence[Sequence[Hashable]]
                         ) -> tuple[list[float], bool]:
    """(class probabilities, every class seen) from ``top`` (token → logprob, the top-K at the label position).

    A class's mass is the sum of its first tokens' probabilities.  A class none of whose tokens is in the
    top-K gets the floor: the smallest top-K probability, the most any absent token can have — an upper bound,
    so an absent class is never ruled out more confidently than the engine's answer allows.  With no class
    seen at all the result is uniform (the engine told nothing about the label).  Renormalised to sum to 1.
    """
    probs = {k: math.exp(v) for k, v in top.items() if v is not None and math.isfinite(v)}
    mass = [sum(probs.get(t, 0.0) for t in group) if any(t in probs for t in group) else None for group in classes]
    seen = [m for m in mass if m is not None]
    if not seen or sum(seen) <= 0:
        return [1.0 / len(classes)] * len(classes), False
    floor = min(probs.values())
    filled = [m if m is not None else floor for m in mass]
    total = sum(filled)
    return [m / total for m in filled], len(seen) == len(classes)


def class_first_tokens(tokenizer: PreTrainedTokenizerBase, label_set: LabelSet) -> list[list[int]]:
    """First token id of each class word, with and without a leading space (the decoder's groups)."""
    groups = [sorted({tokenizer(v, add_special_tokens=False)["input_ids"][0] for v in (f" {c}", c)})
              for c in label_set.classes]
    flat = [i for g in groups for i in g]
    if len(flat) != len(set(flat)):
        raise ValueError(f"the tokenizer starts two of the label words {label_set.classes} with the same token, so "
                         "label_probs cannot be read at the label position")
    return groups


FORCED_SUFFIX = "\nLabel:"
"""Appended to an answer that wrote no ``Label:``; the label distribution is read after it."""


def forced_suffix_ids(tok: PreTrainedTokenizerBase) -> list[int]:
    """The token ids of :data:`FORCED_SUFFIX` (fed after the answer's own tokens)."""
    return list(tok(FORCED_SUFFIX, add_special_tokens=False)["input_ids"])


def token_text(tok: PreTrainedTokenizerBase, token_id: int) -> str:
    """One token's text, as the decoder's tables see it."""
    return str(tok.convert_tokens_to_string([str(tok.convert_ids_to_tokens(token_id))]))


def stop_ids(tok: PreTrainedTokenizerBase) -> set[int]:
    """The decoder's stop tokens: EOS, ``<|im_end|>`` and ``<|endoftext|>`` where the vocabulary has them."""
    ids = [tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")]
    return {i for i in ids if isinstance(i, int) and 0 <= i < len(tok)}


@dataclass
class Settled:
    """One completion cut and placed the way the local decoder would have."""

    length: int
    """Generated tokens kept in the answer (through the newline that ends the label line)."""
    steps: int
    """Decoding steps the local decoder spends (its ``generated_tokens``: a stop token counts)."""
    label_at: int | None
    """Index of the label word among the generated tokens (``None``: the answer wrote no ``Label:``)."""
    forced: bool
    """No ``Label:`` was written: the label is read after ``answer + "\\nLabel:"``."""


def settle(texts: Sequence[str], stopped: bool) -> Settled:
    """Where the local decoder would read the label and end the answer, given the generated tokens' texts
    (``stopped``: the engine ended at a stop token rather than at its token limit)."""
    label_at: int | None = None
    for i, text in enumerate(texts):
        if label_at is None:
            tail = "".join(texts[max(0, i - CUE_TOKENS + 1):i + 1])
            if text.rstrip().endswith(":") and tail.rstrip().lower().endswith(LABEL_CUE):
                label_at = i + 1
        elif i > label_at and "\n" in text:  # not the label word itself: the decoder reads it first
            return Settled(i + 1, i + 1, label_at, False)
    n = len(texts)
    return Settled(n, n + int(stopped), label_at, label_at is None)
