"""The ``openai:`` teacher backend: annotation through any OpenAI-compatible completions endpoint.

``--teacher openai:URL[,key=value…]`` with keys ``model`` (required unless ``teacher.endpoint_model`` is set),
``tokenizer`` (default: the model name), ``api_key_env``, ``concurrency``, ``timeout``, ``patience``,
``rate_limit``, ``logprobs``, ``label_logprobs`` (defaults: the ``teacher.endpoint_*`` fields).

Prompts are built here, with the served model's own tokenizer, and sent as token ids (``POST
{URL}/completions``, ``temperature=0``, ``max_tokens=teacher.max_new_tokens``, ``logprobs=K``): the same
chat template and truncation as the in-process teacher, and, because ids go in and come back
(``return_tokens_as_token_ids``, which vLLM and ``distillery teacher serve`` honour), the forced ``\\nLabel:``
continuation is the exact token sequence the local decoder feeds — a re-tokenised text could differ.  A server
that returns token texts only still works (texts are re-tokenised).  Why not let the server apply the chat
template (``/chat/completions``): the item text is truncated to a token budget, which needs the tokenizer
anyway, and chat completions cannot continue an answer with ``\\nLabel:``::

    distillery teacher serve --model tiny --profile tiny --port 8000 &
    distillery annotate --teacher openai:http://127.0.0.1:8000/v1,model=tiny --data synthetic:40 \\
        --profile tiny --out /tmp/ann
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from distillery.config import Config
from distillery.teacher.engine_labels import TOKEN_ID, token_text
from distillery.teacher.engine_spec import parse_options
from distillery.teacher.engine_teacher import Completion, EngineTeacher
from distillery.teacher.openai_http import HttpJson, Unreachable

SPEC_FIELDS = {"model": "endpoint_model", "api_key_env": "endpoint_key_env", "concurrency": "endpoint_concurrency",
               "timeout": "endpoint_timeout", "patience": "endpoint_patience", "rate_limit": "endpoint_rate_limit",
               "logprobs": "endpoint_logprobs", "label_logprobs": "endpoint_label_logprobs"}
"""Spec keys → the ``teacher`` config field each overrides (``tokenizer`` is the spec's own)."""
SERVED_KEYS = ("id", "root", "owned_by", "distillery")
"""What the identity keeps of the server's ``/models`` entry: what the model is (``distillery serve`` adds its
teacher identity, weights fingerprint included), not limits or per-start fields (vLLM's ``created`` and
``permission`` ids change at every restart, and a resumed shard must see the same identity)."""


@dataclass
class OpenAISpec:
    base_url: str
    tokenizer: str
    cfg: Config
    """The config with the spec's overrides applied to ``teacher.endpoint_*``."""


def parse_spec(rest: str, cfg: Config) -> OpenAISpec:
    """``URL[,key=value…]`` → the endpoint, the tokenizer name and the config with the spec's overrides."""
    where = f"--teacher openai:{rest}"
    url, *opts = rest.split(",")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{where}: {url!r} is not an http(s) URL (expected openai:http://HOST:PORT/v1,model=NAME)")
    cfg, own = parse_options(where, opts, cfg, SPEC_FIELDS, {"tokenizer": ""})
    if not cfg.teacher.endpoint_model:
        raise ValueError(f"{where}: no model=NAME (the model name the server serves)")
    return OpenAISpec(url.rstrip("/"), own.get("tokenizer") or cfg.teacher.endpoint_model, cfg)


class OpenAITeacher(EngineTeacher):
    """A teacher answered by an OpenAI-compatible completions endpoint (see the module docstring)."""

    def __init__(self, spec: OpenAISpec) -> None:
        t = spec.cfg.teacher
        super().__init__(spec.tokenizer, spec.cfg, t.endpoint_label_logprobs)
        self.base_url, self.model = spec.base_url, t.endpoint_model
        self.http = HttpJson(spec.base_url, os.environ.get(t.endpoint_key_env), t.endpoint_timeout, retries=None,
                             backoff=0.25, max_backoff=4.0, patience=t.endpoint_patience,
                             rate_limit=t.endpoint_rate_limit, retry_unreachable=True)
        self.concurrency = t.endpoint_concurrency
        self.served = self._check_model()

    def _check_model(self) -> dict[str, Any]:
        """The served model's entry of ``GET /models`` (an unreachable server or an unknown model fails here)."""
        try:
            listing = self.http.get("/models")
        except Unreachable as exc:
            raise ValueError(f"--teacher openai:{self.base_url}: {exc}") from None
        models = {m.get("id"): m for m in listing.get("data", []) if isinstance(m, dict)}
        if self.model not in models:
            raise ValueError(f"--teacher openai:{self.base_url}: model={self.model!r} is not served there "
                             f"(served: {', '.join(map(str, models)) or 'none'})")
        return dict(models[self.model])

    def complete(self, prompts: list[list[int]], max_tokens: int, logprobs: int) -> list[Completion]:
        # A pool per batch, shut down on leaving: the Teacher protocol has no close(), and the thread start-up is
        # nothing beside the requests' round trips.
        try:
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix="openai-teacher") as pool:
                return list(pool.map(lambda p: self._one(p, max_tokens, logprobs), prompts))
        finally:
            self.engine_stats.retried = self.http.retried

    def _one(self, prompt: list[int], max_tokens: int, logprobs: int) -> Completion:
        body: dict[str, Any] = {"model": self.model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                                "return_tokens_as_token_ids": True}
        if logprobs:
            body["logprobs"] = logprobs
        return self.http.request("/completions", body, lambda r: self._parse(r, bool(logprobs)))

    def _parse(self, reply: Any, want_logprobs: bool) -> Completion:
        """A completion from the reply; a reply without what was asked raises (retried as malformed)."""
        choice = reply["choices"][0]
        lp = choice.get("logprobs") or {}
        tokens = lp.get("tokens")
        if tokens is None:
            if want_logprobs:
                raise KeyError("choices[0].logprobs.tokens")
            tokens = []
        top = [dict(t or {}) for t in (lp.get("top_logprobs") or [])]
        usage = reply.get("usage") or {}
        stopped = choice.get("finish_reason") == "stop"
        if tokens and all(isinstance(t, str) and t.startswith(TOKEN_ID) for t in tokens):
            ids = [int(t[len(TOKEN_ID):]) for t in tokens]
            keyed: list[dict[Hashable, float]] = [{_id(k): float(v) for k, v in d.items()} for d in top]
            texts = [self._text(i) for i in ids]
            return Completion(ids, texts, keyed, stopped, int(usage.get("prompt_tokens", 0)),
                              int(usage.get("completion_tokens", len(ids))))
        texts = [str(t) for t in tokens] if tokens else ([str(choice["text"])] if choice.get("text") else [])
        return Completion(None, texts, [{str(k): float(v) for k, v in d.items()} for d in top], stopped,
                          int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", len(texts))))

    def _text(self, token_id: int) -> str:
        return token_text(self.tok, token_id)

    def identity(self) -> dict[str, Any]:
        """Endpoint, model (with what the server says about it) and the prompt and decoding settings."""
        return {"backend": "openai", "endpoint": self.base_url, "model": self.model,
                "served": {k: v for k, v in self.served.items() if k in SERVED_KEYS}, **self.settings()}


def _id(key: Any) -> Hashable:
    return int(key[len(TOKEN_ID):]) if isinstance(key, str) and key.startswith(TOKEN_ID) else key


def open_openai(rest: str, cfg: Config) -> OpenAITeacher:
    """The ``openai:`` backend (registered in :mod:`distillery.teacher.engines`)."""
    return OpenAITeacher(parse_spec(rest, cfg))
