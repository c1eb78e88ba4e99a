"""What ``distillery teacher serve`` computes: OpenAI completion requests checked, run on the teacher's model,
and answered in OpenAI's shape (the HTTP side is :mod:`distillery.teacher.serve`).

Generation is a plain greedy (or seeded sampling) loop over the model with a KV cache, one prompt at a time
under a lock: correctness first — each token's full-vocabulary log-softmax is computed in float32, so top
logprobs are exact, whatever K.  Stop tokens are the local decoder's (EOS, ``<|im_end|>``, ``<|endoftext|>``)
and are not part of the returned text::

    from distillery.config import load_config
    from distillery.teacher.serve_engine import ServedModel
    from distillery.teacher.serve_requests import parse_completion

    served = ServedModel.load("tiny", load_config("tiny"))
    req = parse_completion({"model": "tiny", "prompt": "Hello", "max_tokens": 4, "logprobs": 2}, served)
    reply = served.completions(req)
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from distillery.config import Config
from distillery.teacher.engine_labels import TOKEN_ID, stop_ids, token_text
from distillery.teacher.generate import cache_keyword


class BadRequest(ValueError):
    """A request the server refuses: HTTP ``status`` with an OpenAI-shaped error message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class CompletionRequest:
    prompts: list[list[int]]
    max_tokens: int
    temperature: float
    logprobs: int | None
    stop: list[str]
    seed: int | None
    token_ids: bool = False
    """``return_tokens_as_token_ids`` (vLLM's extension): tokens as ``token_id:N``, exact for any vocabulary."""


@dataclass
class Generated:
    ids: list[int] = field(default_factory=list)
    chosen: list[float] = field(default_factory=list)
    top: list[list[tuple[int, float]]] = field(default_factory=list)
    finish: str = "length"


class ServedModel:
    """A teacher's model behind a lock, with the tokenizer and what ``/v1/models`` says about it."""

    def __init__(self, name: str, tok: PreTrainedTokenizerBase, model: PreTrainedModel, info: dict[str, Any],
                 max_logprobs: int) -> None:
        self.name, self.tok, self.model, self.info = name, tok, model, info
        self.vocab = len(tok)
        self.max_logprobs = max_logprobs or self.vocab
        self.max_len = int(getattr(model.config, "max_position_embeddings", 2048))
        self.stop_ids = stop_ids(tok)
        self.cache_kw = cache_keyword(model)
        self.device = next(model.parameters()).device
        self.lock = threading.Lock()
        self.served = 0

    @classmethod
    def load(cls, name: str, cfg: Config, max_logprobs: int = 20) -> ServedModel:
        """``tiny``, ``smollm2``, a teacher directory or a HF causal LM, loaded as the local teacher loads it."""
        from distillery.teacher.inference import load_teacher

        teacher = load_teacher(name, cfg)
        return cls(name, teacher.tokenizer, teacher.model, teacher.identity(), max_logprobs)

    def text(self, token_id: int) -> str:
        return token_text(self.tok, token_id)

    @torch.inference_mode()
    def generate(self, prompt: list[int], req: CompletionRequest) -> Generated:
        """Greedy (``temperature=0``) or sampled tokens after ``prompt``, with top logprobs per token."""
        gen = torch.Generator().manual_seed(req.seed) if req.seed is not None else None
        out, k = Generated(), min(req.logprobs or 0, self.vocab)
        cache, ids = DynamicCache(), torch.tensor([prompt])
        for _ in range(req.max_tokens):
            mask = torch.ones(1, cache.get_seq_length() + ids.shape[1], dtype=torch.long)
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device), use_cache=True,
                                logits_to_keep=1, **{self.cache_kw: cache}).logits[0, -1].float().cpu()
            logp = torch.log_softmax(logits, dim=-1)
            if req.temperature <= 0:
                nxt = int(logits.max(-1).indices)  # the decoder's greedy pick: first maximal index
            else:
                nxt = int(torch.multinomial(torch.softmax(logits / req.temperature, -1), 1, generator=gen))
            if nxt in self.stop_ids:
                out.finish = "stop"
                break
            out.ids.append(nxt)
            out.chosen.append(float(logp[nxt]))
            if k:
                vals, idx = logp.topk(k)
                out.top.append(list(zip(idx.tolist(), vals.tolist(), strict=True)))
            if req.stop and self._hit_stop(out, req.stop):
                out.finish = "stop"
                break
            ids = torch.tensor([[nxt]])
        return out

    def _hit_stop(self, out: Generated, stops: list[str]) -> bool:
        """Cut the answer before the first stop string it now contains (OpenAI leaves the stop string out)."""
        text = str(self.tok.decode(out.ids, skip_special_tokens=True))
        cut = min((text.find(s) for s in stops if s in text), default=-1)
        if cut < 0:
            return False
        while out.ids and len(str(self.tok.decode(out.ids, skip_special_tokens=True))) > cut:
            out.ids.pop()
            out.chosen.pop()
            if out.top:
                out.top.pop()
        return True

    def completions(self, req: CompletionRequest) -> dict[str, Any]:
        """The ``/v1/completions`` reply: one choice per prompt."""
        choices, prompt_tokens, completion_tokens = [], 0, 0
        for i, prompt in enumerate(req.prompts):
            with self.lock:
                g = self.generate(prompt, req)
                self.served += 1
            prompt_tokens += len(prompt)
            completion_tokens += len(g.ids) + int(g.finish == "stop")
            choices.append({"index": i, "text": str(self.tok.decode(g.ids, skip_special_tokens=True)),
                            "logprobs": self._logprobs(g, req.token_ids) if req.logprobs is not None else None,
                            "finish_reason": g.finish})
        return {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
                "model": self.name, "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}

    def _logprobs(self, g: Generated, token_ids: bool) -> dict[str, Any]:
        def key(i: int) -> str:
            return f"{TOKEN_ID}{i}" if token_ids else self.text(i)

        offsets, pos = [], 0
        for i in g.ids:
            offsets.append(pos)
            pos += len(self.text(i))
        return {"tokens": [key(i) for i in g.ids], "token_logprobs": g.chosen,
                "top_logprobs": [{key(i): v for i, v in top} for top in g.top] if g.top else None,
                "text_offset": offsets}

    def chat_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        """The token ids of a conversation under the model's chat template, ready for the assistant's turn."""
        text = str(self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        return list(self.tok(text, add_special_tokens=False)["input_ids"])  # the template holds the special tokens

    def chat(self, messages: list[dict[str, str]], req: CompletionRequest) -> dict[str, Any]:
        """The ``/v1/chat/completions`` reply for one conversation (``req.prompts[0]``, when given, is its
        :meth:`chat_prompt`, already length-checked by ``parse_chat``)."""
        ids = req.prompts[0] if req.prompts else self.chat_prompt(messages)
        with self.lock:
            g = self.generate(ids, req)
            self.served += 1
        n = len(g.ids) + int(g.finish == "stop")
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
                "model": self.name, "choices": [{"index": 0, "finish_reason": g.finish, "message": {
                    "role": "assistant", "content": str(self.tok.decode(g.ids, skip_special_tokens=True))}}],
                "usage": {"prompt_tokens": len(ids), "completion_tokens": n, "total_tokens": len(ids) + n}}

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.name, "object": "model", "owned_by": "distillery",
                                            "max_model_len": self.max_len, "max_logprobs": self.max_logprobs,
                                            "distillery": self.info}]}
