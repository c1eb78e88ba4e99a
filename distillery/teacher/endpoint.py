"""Reasoning for SFT from an OpenAI-compatible chat endpoint, with rejection sampling against the gold label.

The endpoint (``POST {base_url}/chat/completions``) is asked for an answer in the teacher's format; answers
whose label disagrees with the gold label are rejected and the pair is asked again, up to
``teacher.endpoint_samples`` times.  Server errors, timeouts and malformed replies are retried
``teacher.endpoint_retries`` times with back-off; an unreachable endpoint fails with a clear message.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from distillery.config import TeacherConfig
from distillery.data.schema import LabelSet, Pair
from distillery.teacher.openai_http import EndpointError, HttpJson, Unreachable
from distillery.teacher.prompt import (
    clean_text,
    format_answer,
    item_block,
    parse_answer,
    parse_error_code,
    system_prompt,
)

__all__ = ["EndpointClient", "EndpointError", "RejectionStats", "endpoint_answers"]


@dataclass
class EndpointClient:
    """A minimal OpenAI-compatible chat client over :class:`HttpJson` (standard library only)."""

    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = 60.0
    retries: int = 3
    backoff: float = 0.5

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self.http = HttpJson(self.base_url, self.api_key, self.timeout, self.retries, self.backoff,
                             max_backoff=max(4.0, self.backoff))

    @classmethod
    def from_config(cls, cfg: TeacherConfig) -> EndpointClient:
        return cls(cfg.endpoint_base_url, cfg.endpoint_model, os.environ.get(cfg.endpoint_key_env),
                   cfg.endpoint_timeout, cfg.endpoint_retries)

    def chat(self, messages: list[dict[str, str]], temperature: float = 0.7) -> str:
        """The assistant's reply text; retries 5xx, 429, timeouts and malformed replies."""
        body = {"model": self.model, "messages": messages, "temperature": temperature}
        try:
            return self.http.request("/chat/completions", body, _content)
        except Unreachable as exc:
            raise Unreachable(f"{exc}; check teacher.endpoint_base_url") from None


def _content(reply: Any) -> str:
    content = reply["choices"][0]["message"]["content"]
    if not isinstance(content, str):  # e.g. null content (a refusal or a tool call)
        raise TypeError(f"message content is {type(content).__name__}, not text")
    return content


@dataclass
class RejectionStats:
    asked: int = 0
    accepted: int = 0
    rejected_pairs: list[str] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    """Rejected answers by reason: ``wrong_label``, ``empty_reasoning`` or the parse error's code
    (``no_label_line``, ``unknown_label``, ``conflicting_labels``)."""


def endpoint_answers(pairs: list[Pair], label_set: LabelSet, client: EndpointClient, samples: int,
                     item_fields: list[str], max_field_chars: int) -> tuple[list[str | None], RejectionStats]:
    """Per pair, the first endpoint answer whose label equals the gold label (re-formatted), else None."""
    stats = RejectionStats()
    out: list[str | None] = []
    system = system_prompt(label_set)
    for p in pairs:
        gold = label_set.classes[label_set.index(p.label or "")]
        user = f"Query: {p.query}\nItem:\n{item_block(p, item_fields, max_field_chars)}"
        accepted = None
        for _ in range(samples):
            stats.asked += 1
            parsed = parse_answer(clean_text(client.chat([{"role": "system", "content": system},
                                                          {"role": "user", "content": user}])), label_set)
            if parsed.error is not None:
                stats.reasons[parse_error_code(parsed.error)] += 1
            elif parsed.label != gold:
                stats.reasons["wrong_label"] += 1
            elif not parsed.reasoning.strip():
                stats.reasons["empty_reasoning"] += 1
            else:
                accepted = format_answer(parsed.reasoning, gold)
                break
        if accepted is None:
            stats.rejected_pairs.append(f"{p.query_id}/{p.item_id}")
        else:
            stats.accepted += 1
        out.append(accepted)
    return out, stats
