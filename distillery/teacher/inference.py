"""Teacher inference: load a teacher, answer pairs in batches, read soft labels at the label position.

CPU usage (tiny teacher, seconds; ``smollm2`` loads the packaged SmolLM2-135M-Instruct)::

    from distillery.config import load_config
    from distillery.data import load_pairs
    from distillery.teacher.inference import load_teacher

    cfg = load_config("tiny")
    teacher = load_teacher("tiny", cfg)          # or "smollm2", or a directory written by `distillery teacher`
    answers = teacher.answer(load_pairs("synthetic:16"), batch_size=8)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from distillery.config import Config, TeacherConfig
from distillery.data.schema import LabelSet, Pair, get_label_set
from distillery.teacher.generate import Decoder, Generation
from distillery.teacher.model import (
    TeacherMeta,
    is_teacher_dir,
    load_base,
    meta_for,
    native_bf16,
    resolve,
    weights_hash,
)
from distillery.teacher.prompt import PROMPT_VERSION, PromptBuilder, parse_answer, parse_error_code


@dataclass
class TeacherAnswer:
    """One answer; ``label_probs`` is aligned with the label set's classes.

    ``label`` is the argmax of ``label_probs``, the teacher's distribution over the label words read at the
    ``Label:`` position (the model's own, or one appended when it wrote none): every answer has a label by
    construction.  ``written_label`` is what the free text says (``None`` when it names no valid label);
    ``disagreement`` says why the two differ (``None`` when they agree).
    """

    label: str | None
    label_probs: list[float]
    reasoning: str
    raw: str
    parse_error: str | None
    """Set only when no distribution was read (a backend that returns none); the text then decides the label."""
    prompt_tokens: int
    generated_tokens: int
    forced_label: bool = False
    """True when the answer wrote no ``Label:`` and ``label_probs`` were read after appending one."""
    written_label: str | None = None
    disagreement: str | None = None
    """``no_label_line``, ``unknown_label``, ``conflicting_labels`` (the text's label could not be read) or
    ``other_label`` (the text names another class than the distribution's argmax)."""

    @property
    def agrees(self) -> bool:
        """The free text names the same label as the label position chose."""
        return self.disagreement is None


def to_answer(raw: str, label_probs: list[float] | None, label_set: LabelSet, prompt_tokens: int,
              generated_tokens: int, forced_label: bool = False) -> TeacherAnswer:
    """The one rule every backend follows to turn a generated text and its label distribution into an answer.

    With a distribution the label is its argmax, whatever the reasoning did (parse failures cannot drop a pair);
    the text's own label is kept for the reasoning/label agreement figure.  Without one (a backend that cannot
    read it) the parsed text decides and a parse failure stays a failure.
    """
    parsed = parse_answer(raw, label_set)
    if not label_probs:
        return TeacherAnswer(parsed.label, [1.0 / label_set.num_classes] * label_set.num_classes, parsed.reasoning,
                             raw, parsed.error, prompt_tokens, generated_tokens, forced_label, parsed.label, None)
    chosen = label_set.classes[max(range(len(label_probs)), key=label_probs.__getitem__)]
    if parsed.error is not None:
        disagreement: str | None = parse_error_code(parsed.error)
    else:
        disagreement = None if parsed.label == chosen else "other_label"
    return TeacherAnswer(chosen, list(label_probs), parsed.reasoning, raw, None, prompt_tokens, generated_tokens,
                         forced_label, parsed.label, disagreement)


LABEL_RULE = "argmax-at-label-position"
"""How an answer's label is chosen (:func:`to_answer`); part of a teacher's identity, so records made under the
older parse-the-text rule are not resumed into a shard made under this one."""


def answer_settings(meta: TeacherMeta, tcfg: TeacherConfig) -> dict[str, Any]:
    """The prompt, decoding and label settings that determine a teacher's answers, whatever runs the model (part
    of every backend's identity, so a shard never resumes under other settings)."""
    return {"base": meta.base, "label_set": meta.label_set, "prompt_version": PROMPT_VERSION,
            "item_fields": list(meta.item_fields), "max_prompt_tokens": meta.max_prompt_tokens,
            "max_field_chars": meta.max_field_chars, "max_new_tokens": tcfg.max_new_tokens, "decoding": "greedy",
            "label_rule": LABEL_RULE,
            # only when on: a teacher written before the match line keeps its identity, so its shards resume
            **({"match_hint": True} if meta.match_hint else {})}


class Teacher:
    """A causal LM with its prompt builder and decoder; ``answer`` keeps the input order."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, meta: TeacherMeta,
                 tcfg: TeacherConfig, source: str) -> None:
        self.tokenizer, self.model, self.meta, self.cfg, self.source = tokenizer, model, meta, tcfg, source
        self.label_set: LabelSet = get_label_set(meta.label_set)
        self.model.eval()
        self.prompter = PromptBuilder.from_meta(tokenizer, meta)
        self.decoder = Decoder(model, tokenizer, self.label_set)
        self.last_seconds = 0.0
        self.prefix = self.prompter.shared_prefix()

    @property
    def classes(self) -> list[str]:
        return list(self.label_set.classes)

    def answer(self, pairs: list[Pair], batch_size: int | None = None, progress: bool = False) -> list[TeacherAnswer]:
        """Greedy answers for ``pairs`` (same order), generated ``batch_size`` prompts at a time."""
        gens = self._generate(self.prompter.build(pairs), batch_size or self.cfg.batch_size, 0.0, None, progress)
        return [self._to_answer(g) for g in gens]

    def sample(self, pairs: list[Pair], k: int, temperature: float, seed: int, batch_size: int | None = None,
               progress: bool = False) -> list[list[TeacherAnswer]]:
        """``k`` sampled answers per pair (reproducible for a seed), for reward training and DPO pairs."""
        prompts = [p for p in self.prompter.build(pairs) for _ in range(k)]
        gen = torch.Generator().manual_seed(seed)
        gens = self._generate(prompts, batch_size or self.cfg.batch_size, temperature, gen, progress)
        flat = [self._to_answer(g) for g in gens]
        return [flat[i * k:(i + 1) * k] for i in range(len(pairs))]

    def _generate(self, prompts: list[str], batch_size: int, temperature: float, gen: torch.Generator | None,
                  progress: bool) -> list[Generation]:
        # Prompts of similar length share a batch (less padding); results go back to input order.
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out: list[Generation | None] = [None] * len(prompts)
        start = time.perf_counter()
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        for idx in tqdm(batches, desc="teacher", unit="batch", disable=not progress):
            for i, g in zip(idx, self.decoder.generate([prompts[i] for i in idx], self.cfg.max_new_tokens,
                                                       temperature, gen, self.prefix), strict=True):
                out[i] = g
        self.last_seconds = time.perf_counter() - start
        return [g for g in out if g is not None]

    def _to_answer(self, g: Generation) -> TeacherAnswer:
        raw = str(self.tokenizer.decode(g.tokens, skip_special_tokens=True))
        return to_answer(raw, g.label_probs, self.label_set, g.prompt_tokens, g.steps, g.forced_label)

    @cached_property
    def _weights(self) -> str:
        return weights_hash(self.model)

    def identity(self) -> dict[str, Any]:
        """Everything that determines the answers: model, weights fingerprint, prompt and decoding settings."""
        return {"model": self.source, "weights_sha256_16": self._weights,
                "steps": [s.get("step") for s in self.meta.steps], **answer_settings(self.meta, self.cfg),
                "dtype": str(self.model.dtype)}


def inference_dtype(setting: str, cuda: bool) -> torch.dtype:
    """The weights dtype generation runs in, for ``teacher.infer_dtype``."""
    if setting == "auto":
        return torch.bfloat16 if native_bf16(cuda) else torch.float32
    return torch.bfloat16 if setting == "bfloat16" else torch.float32


def load_teacher(model: str, cfg: Config, *, training: bool = False) -> Teacher:
    """A teacher from a directory written by ``distillery teacher``, ``smollm2``, ``tiny`` or any HF causal LM.

    A teacher directory brings its own label set and prompt settings (the ones it was trained with);
    otherwise they come from ``cfg``.  Generation settings (``max_new_tokens``, batch size, ``infer_dtype``)
    come from ``cfg``; ``training=True`` keeps float32 weights (DPO trains the loaded model).
    """
    if cfg.teacher.threads:
        torch.set_num_threads(cfg.teacher.threads)
    tok, lm, base = load_base(model, cfg.teacher)
    cuda = torch.cuda.is_available()
    if cuda:  # the GPU machine
        lm.to(torch.device("cuda"))  # type: ignore[arg-type]
    if not training:
        lm.to(inference_dtype(cfg.teacher.infer_dtype, cuda))  # type: ignore[arg-type]
    local = resolve(model)  # an s3:// teacher: its downloaded copy holds teacher.json
    meta = TeacherMeta.load(local) if is_teacher_dir(local) else meta_for(base, cfg)
    return Teacher(tok, lm, meta, cfg.teacher, model)
