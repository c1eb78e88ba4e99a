"""A teacher whose tokens come from an inference engine: the prompts, label rules and answers of the local one.

:class:`EngineTeacher` builds the prompts the local :class:`distillery.teacher.inference.Teacher` builds (same
tokenizer, chat template and truncation), has the engine complete them as token ids (greedy), settles each
completion with the decoder's rules (:mod:`distillery.teacher.engine_labels`), reads the label distributions
the completions did not carry with one-token requests, and makes answers with :func:`to_answer` — the one rule
both kinds of teacher follow.  A backend supplies :meth:`EngineTeacher.complete` (the OpenAI-compatible
client, vLLM)::

    class MyEngine(EngineTeacher):
        def complete(self, prompts, max_tokens, logprobs):
            return [Completion(ids=[...], texts=[...], top=[{...}, ...], stopped=True) for _ in prompts]
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from distillery.config import Config
from distillery.data.schema import LabelSet, Pair, get_label_set
from distillery.teacher.engine_labels import class_first_tokens, forced_suffix_ids, label_probs_from_top, settle
from distillery.teacher.inference import TeacherAnswer, answer_settings, to_answer
from distillery.teacher.model import TeacherMeta, is_teacher_dir, meta_for, smollm2_tokenizer
from distillery.teacher.prompt import PromptBuilder


@dataclass
class Completion:
    """One greedy completion as an engine returns it."""

    ids: list[int] | None
    """Generated token ids (stop token excluded); ``None`` when the engine returned token texts only."""
    texts: list[str]
    """Each generated token's text."""
    top: list[dict[Hashable, float]]
    """Top logprobs per generated token, keyed by token id (or by token text when ``ids`` is ``None``)."""
    stopped: bool
    """Ended at a stop token (rather than at ``max_tokens``)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class EngineStats:
    """What the engine was asked, for the throughput report (accumulated; read before and after a shard)."""

    requests: int = 0
    seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    label_reads: int = 0
    retried: int = 0
    """Attempts that failed transiently (a server error, timeout or restart) and were retried."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, comps: Sequence[Completion], seconds: float, reads: bool = False) -> None:
        with self._lock:
            self.requests += len(comps)
            self.seconds += seconds
            self.prompt_tokens += sum(c.prompt_tokens for c in comps)
            self.completion_tokens += sum(c.completion_tokens for c in comps)
            self.label_reads += len(comps) if reads else 0

    def snapshot(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in ("requests", "seconds", "prompt_tokens", "completion_tokens",
                                              "label_reads", "retried")}


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """The tokenizer of a teacher ``name``: ``tiny``/``smollm2`` (SmolLM2's), a teacher or Hugging Face directory."""
    if name in ("tiny", "smollm2"):
        return smollm2_tokenizer()
    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise ValueError(f"tokenizer={name!r}: not 'tiny', 'smollm2' or a directory with a tokenizer "
                         f"({' '.join(str(exc).split())[:200]}); name the served model's tokenizer with "
                         "tokenizer=DIR") from None


class EngineTeacher:
    """The engine-independent half of an engine-backed teacher (see the module docstring)."""

    def __init__(self, tokenizer_name: str, cfg: Config, label_logprobs: int) -> None:
        self.tok = load_tokenizer(tokenizer_name)
        self.meta = TeacherMeta.load(tokenizer_name) if is_teacher_dir(tokenizer_name) else meta_for(
            Path(tokenizer_name).name if Path(tokenizer_name).is_dir() else tokenizer_name, cfg)
        self.tokenizer_name, self.cfg, self.label_logprobs = tokenizer_name, cfg.teacher, label_logprobs
        self.label_set: LabelSet = get_label_set(self.meta.label_set)
        self.prompter = PromptBuilder.from_meta(self.tok, self.meta)
        self.classes = class_first_tokens(self.tok, self.label_set)
        self.suffix = forced_suffix_ids(self.tok)
        self.engine_stats = EngineStats()

    def complete(self, prompts: list[list[int]], max_tokens: int, logprobs: int) -> list[Completion]:
        """Greedy completions of token-id prompts, in order, with top-``logprobs`` per generated token."""
        raise NotImplementedError

    def answer(self, pairs: list[Pair], batch_size: int | None = None, progress: bool = False) -> list[TeacherAnswer]:
        """Greedy answers for ``pairs`` (same order); ``batch_size`` is the engine's business."""
        prompts = [list(self.tok(p, add_special_tokens=False)["input_ids"]) for p in self.prompter.build(pairs)]
        t0 = time.perf_counter()
        comps = self.complete(prompts, self.cfg.max_new_tokens, self.cfg.endpoint_logprobs)
        self.engine_stats.add(comps, time.perf_counter() - t0)
        settled = [settle(c.texts, c.stopped) for c in comps]
        probs: list[list[float] | None] = [None] * len(pairs)
        reads: list[int] = []
        for i, (c, s) in enumerate(zip(comps, settled, strict=True)):
            if s.label_at is not None and s.label_at < len(c.top):
                read, covered = label_probs_from_top(c.top[s.label_at], self._keys(c))
                probs[i] = read
                if not covered and self.label_logprobs > self.cfg.endpoint_logprobs:
                    reads.append(i)  # a wider top-K may see the missing classes
            else:
                reads.append(i)
        if reads:
            heads = [prompts[i] + self._answer_ids(comps[i], settled[i].label_at, settled[i].length)
                     + (self.suffix if settled[i].forced else []) for i in reads]
            t0 = time.perf_counter()
            more = self.complete(heads, 1, self.label_logprobs)
            self.engine_stats.add(more, time.perf_counter() - t0, reads=True)
            for i, c in zip(reads, more, strict=True):
                probs[i] = label_probs_from_top(c.top[0], self._keys(c))[0] if c.top else probs[i]
        return [to_answer(self._raw(c, s.length), probs[i], self.label_set, len(prompts[i]), s.steps, s.forced)
                for i, (c, s) in enumerate(zip(comps, settled, strict=True))]

    def _keys(self, c: Completion) -> list[list[Hashable]]:
        if c.ids is not None:
            return [list(g) for g in self.classes]
        return [[str(self.tok.decode([t])) for t in g] for g in self.classes]

    def _answer_ids(self, c: Completion, label_at: int | None, length: int) -> list[int]:
        """The answer up to where the label is read: through ``Label:`` when written, else all of it."""
        n = label_at if label_at is not None else length
        if c.ids is not None:
            return c.ids[:n]
        return list(self.tok("".join(c.texts[:n]), add_special_tokens=False)["input_ids"])

    def _raw(self, c: Completion, length: int) -> str:
        if c.ids is not None:
            return str(self.tok.decode(c.ids[:length], skip_special_tokens=True))
        return "".join(c.texts[:length])

    def settings(self) -> dict[str, Any]:
        """The prompt and decoding settings of the identity (the backend adds its engine and model)."""
        return {"tokenizer": self.tokenizer_name, **answer_settings(self.meta, self.cfg),
                "logprobs": self.cfg.endpoint_logprobs, "label_logprobs": self.label_logprobs}
