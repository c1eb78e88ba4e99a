"""The decoding loop against a scripted language model: stopping, label position, forced label, batching."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn
from transformers.modeling_outputs import CausalLMOutput

from distillery.config import load_config
from distillery.data import THREE_CLASS, Pair, load_pairs
from distillery.teacher.generate import Decoder
from distillery.teacher.inference import Teacher, load_teacher
from distillery.teacher.model import meta_for, smollm2_tokenizer

LABEL_PROBS = [0.6, 0.3, 0.1]


class ScriptedLM(nn.Module):
    """Emits ``script`` after the prompt (by absolute position); a ``None`` entry, or any position past the
    script, yields the label distribution ``LABEL_PROBS`` over the label words' first tokens."""

    def __init__(self, tok: Any, script: list[int | None], prompt_len: int) -> None:
        super().__init__()
        self.vocab, self.script, self.prompt_len = len(tok), script, prompt_len
        self.label_ids = [tok(f" {c}", add_special_tokens=False)["input_ids"][0] for c in THREE_CLASS.classes]
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, cache: Any = None, use_cache: bool = False,
                logits_to_keep: int = 0, **_: Any) -> CausalLMOutput:
        assert position_ids is not None
        logits = torch.full((input_ids.shape[0], 1, self.vocab), -1e4)
        for r, pos in enumerate(position_ids[:, -1].tolist()):
            i = pos - self.prompt_len + 1
            tok = self.script[i] if 0 <= i < len(self.script) else None
            if tok is None:
                for tid, p in zip(self.label_ids, LABEL_PROBS, strict=True):
                    logits[r, 0, tid] = math.log(p)
            else:
                logits[r, 0, tok] = 0.0
        return CausalLMOutput(logits=logits)


def _teacher(script_text: str | None, label_word: str | None, tail: str, stop: bool) -> tuple[Teacher, list[Pair]]:
    tok = smollm2_tokenizer()
    tok.padding_side = "left"
    cfg = load_config("tiny", overrides={"teacher": {"max_new_tokens": 40}})
    pairs = [Pair("q", "red shoe", "i", title="Red running shoe", label="Exact")] * 3
    meta = meta_for("scripted", cfg)
    probe = Teacher(tok, ScriptedLM(tok, [], 0), meta, cfg.teacher, "scripted")  # type: ignore[arg-type]
    prompt_len = len(tok(probe.prompter.build(pairs[:1])[0], add_special_tokens=False)["input_ids"])
    ids: list[int | None] = list(tok(script_text, add_special_tokens=False)["input_ids"]) if script_text else []
    if label_word is not None:
        ids.append(None)  # the label position: the model's distribution decides the first token
        ids.extend(tok(f" {label_word}", add_special_tokens=False)["input_ids"][1:])
    ids.extend(tok(tail, add_special_tokens=False)["input_ids"])
    if stop:
        ids.append(tok.convert_tokens_to_ids("<|im_end|>"))
    model = ScriptedLM(tok, ids, prompt_len)
    return Teacher(tok, model, meta, cfg.teacher, "scripted"), pairs  # type: ignore[arg-type]


def test_reads_label_probs_at_the_label_position_and_stops_after_the_label_line() -> None:
    teacher, pairs = _teacher("Reasoning: it is a red shoe.\nLabel:", "Exact", "\nExtra text that is never read", False)
    answers = teacher.answer(pairs, batch_size=2)
    for a in answers:
        assert a.label == "Exact" and a.parse_error is None and not a.forced_label
        assert a.reasoning == "it is a red shoe."
        assert a.label_probs == pytest.approx(LABEL_PROBS, abs=1e-4)
        assert "Extra" not in a.raw  # the row stopped at the newline after the label
        assert a.prompt_tokens > 0 and a.generated_tokens == len(teacher.tokenizer(a.raw)["input_ids"])


def test_stop_token_ends_a_row_and_a_missing_label_is_forced_and_counted() -> None:
    teacher, pairs = _teacher("This shoe is great.", None, "", True)
    (a, *_) = teacher.answer(pairs, batch_size=3)
    # The label comes from the forced position; the missing label line is a disagreement, not a lost pair.
    assert a.label == teacher.classes[max(range(3), key=LABEL_PROBS.__getitem__)] and a.parse_error is None
    assert a.disagreement == "no_label_line" and a.written_label is None
    assert a.raw == "This shoe is great." and a.forced_label
    assert a.label_probs == pytest.approx(LABEL_PROBS, abs=1e-4)


def test_label_words_sharing_a_first_token_are_refused() -> None:
    tok = smollm2_tokenizer()
    from distillery.data.schema import LabelSet

    clash = LabelSet("clash", ("Exact", "Exacting"), {"exact": "Exact", "exacting": "Exacting"})
    with pytest.raises(ValueError, match="same token"):
        Decoder(ScriptedLM(tok, [], 0), tok, clash)  # type: ignore[arg-type]


def test_tiny_teacher_batches_prefix_cache_and_identity() -> None:
    cfg = load_config("tiny", overrides={"teacher": {"max_new_tokens": 6}})
    teacher = load_teacher("tiny", cfg)
    pairs = load_pairs("synthetic:40")[:5]
    cached = teacher.answer(pairs, batch_size=5)
    assert len(cached) == 5 and teacher.prefix
    for a in cached:
        assert len(a.label_probs) == 3 and sum(a.label_probs) == pytest.approx(1.0, abs=1e-5)
        assert 1 <= a.generated_tokens <= 6
    teacher.prefix = ""  # the same batch without the shared-prefix cache gives the same answers
    plain = teacher.answer(pairs, batch_size=5)
    for x, y in zip(cached, plain, strict=True):
        assert x.raw == y.raw and x.label_probs == pytest.approx(y.label_probs, abs=1e-4)
    ident = teacher.identity()
    assert ident == load_teacher("tiny", cfg).identity()
    assert {"model", "weights_sha256_16", "prompt_version", "max_new_tokens", "decoding"} <= set(ident)
    sampled = teacher.sample(pairs[:2], k=3, temperature=1.0, seed=7)
    again = teacher.sample(pairs[:2], k=3, temperature=1.0, seed=7)
    assert [[a.raw for a in s] for s in sampled] == [[a.raw for a in s] for s in again]
    assert len({a.raw for a in sampled[0]}) > 1


def test_reserved_cache_matches_the_dynamic_cache_through_growth_and_row_drops() -> None:
    from transformers import DynamicCache

    from distillery.teacher.generate import ReservedCache

    teacher = load_teacher("tiny", load_config("tiny"))
    lm = teacher.model
    ids = torch.randint(5, 200, (4, 9), generator=torch.Generator().manual_seed(0))
    caches = (DynamicCache(), ReservedCache())
    with torch.inference_mode():
        outs = [lm(input_ids=ids, cache=c, use_cache=True).logits[:, -1] for c in caches]
        nxt = outs[0].argmax(-1)[:, None]
        for step in range(150):  # past the first buffer's spare room (9 + 64), so the buffer grows
            if step == 40:
                for c in caches:
                    c.batch_select_indices(torch.tensor([0, 2, 3]))
                nxt = nxt[[0, 2, 3]]
            outs = [lm(input_ids=nxt, cache=c, use_cache=True).logits[:, -1] for c in caches]
            torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-5)
            nxt = outs[0].argmax(-1)[:, None]
    assert caches[1].get_seq_length() == caches[0].get_seq_length() == 159


def test_inference_dtype_setting() -> None:
    from distillery.teacher.inference import inference_dtype

    assert inference_dtype("float32", cuda=False) == torch.float32
    assert inference_dtype("bfloat16", cuda=False) == torch.bfloat16
    assert inference_dtype("auto", cuda=False) in (torch.float32, torch.bfloat16)
    assert load_teacher("tiny", load_config("tiny")).model.dtype == torch.float32  # tiny profile pins float32
    bf16 = load_teacher("tiny", load_config("tiny", overrides={"teacher": {"infer_dtype": "bfloat16"}}))
    assert bf16.model.dtype == torch.bfloat16 and bf16.identity()["dtype"] == "torch.bfloat16"
    assert len(bf16.answer(load_pairs("synthetic:40")[:2], batch_size=2)) == 2


def test_forced_label_read_through_the_cache_equals_a_fresh_forward() -> None:
    """A row that never writes ``Label:`` gets the distribution after prompt + answer + "\\nLabel:"."""
    teacher = load_teacher("tiny", load_config("tiny"))
    prompts = teacher.prompter.build(load_pairs("synthetic:40")[:4])
    gens = teacher.decoder.generate(prompts, 5)
    dec, tok = teacher.decoder, teacher.tokenizer
    for prompt, g in zip(prompts, gens, strict=True):
        assert g.forced_label and g.label_probs is not None  # a random-init model never writes the cue
        ids = tok(prompt, add_special_tokens=False)["input_ids"] + g.tokens + dec.suffix_ids
        with torch.inference_mode():
            logits = teacher.model(input_ids=torch.tensor([ids])).logits[:, -1]
        assert g.label_probs == pytest.approx(dec._class_probs(logits)[0].tolist(), abs=1e-4)


def test_prefill_in_row_chunks_gives_the_same_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    from distillery.teacher import generate

    teacher = load_teacher("tiny", load_config("tiny", overrides={"teacher": {"max_new_tokens": 6}}))
    pairs = load_pairs("synthetic:40")[:5]
    whole = teacher.answer(pairs, batch_size=5)
    monkeypatch.setattr(generate, "PREFILL_TOKENS", 1)  # one row per prefill forward, caches stacked after
    chunked = teacher.answer(pairs, batch_size=5)
    for x, y in zip(whole, chunked, strict=True):
        assert x.raw == y.raw and x.label_probs == pytest.approx(y.label_probs, abs=1e-4)


def test_cascade_attention_equals_sdpa_over_prefix_and_row_keys() -> None:
    """One query token over [shared prefix | left-padded row keys]: the log-sum-exp merge equals plain SDPA."""
    from distillery.teacher.prefix_attention import _cascade

    g = torch.Generator().manual_seed(0)
    b, heads, kv_heads, p, own, d = 5, 6, 2, 7, 11, 16
    q = torch.randn(b, heads, 1, d, generator=g)
    pk, pv = torch.randn(kv_heads, p, d, generator=g), torch.randn(kv_heads, p, d, generator=g)
    rk, rv = torch.randn(b, kv_heads, own, d, generator=g), torch.randn(b, kv_heads, own, d, generator=g)
    key = torch.cat([pk.expand(b, -1, -1, -1), rk], dim=2)
    value = torch.cat([pv.expand(b, -1, -1, -1), rv], dim=2)
    mask = torch.ones(b, 1, 1, p + own, dtype=torch.bool)
    for r in range(b):
        mask[r, ..., p:p + 2 * r] = False  # left padding after the prefix, a different amount per row
    want = torch.nn.functional.scaled_dot_product_attention(q, key, value, attn_mask=mask, scale=0.3,
                                                            enable_gqa=True).transpose(1, 2)
    torch.testing.assert_close(_cascade(q, key, value, mask, pk, pv, 0.3), want, rtol=1e-5, atol=1e-5)
    unpadded = torch.nn.functional.scaled_dot_product_attention(q, key, value, scale=0.3, enable_gqa=True)
    torch.testing.assert_close(_cascade(q, key, value, None, pk, pv, 0.3), unpadded.transpose(1, 2),
                               rtol=1e-5, atol=1e-5)


def test_tiny_teacher_decodes_the_same_with_and_without_the_cascade() -> None:
    teacher = load_teacher("tiny", load_config("tiny", overrides={"teacher": {"max_new_tokens": 6}}))
    assert teacher.decoder.cascade and teacher.prefix  # installed on the CPU, prompts share the system prefix
    pairs = load_pairs("synthetic:40")[:6]
    cascade = teacher.answer(pairs, batch_size=6)
    teacher.decoder.cascade = False
    plain = teacher.answer(pairs, batch_size=6)
    for x, y in zip(cascade, plain, strict=True):
        assert x.raw == y.raw and x.label_probs == pytest.approx(y.label_probs, abs=1e-5)
