"""Checks of OpenAI completion and chat requests for ``distillery teacher serve``: a bad field is a 400 naming it.

    from distillery.teacher.serve_requests import parse_completion

    req = parse_completion({"model": "tiny", "prompt": [1, 2, 3], "max_tokens": 4}, served)
"""

from __future__ import annotations

import math
from typing import Any

from distillery.teacher.serve_engine import BadRequest, CompletionRequest, ServedModel

UNSUPPORTED = {"stream": False, "echo": False, "n": 1, "best_of": 1, "suffix": None}
"""Fields accepted only at these values (this server returns one non-streamed choice per prompt)."""


def _int(body: dict[str, Any], name: str, default: int | None, lo: int, hi: int) -> int | None:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise BadRequest(f"{name}={value!r}: must be an integer in [{lo}, {hi}]")
    return value


def _prompts(value: Any, served: ServedModel) -> list[list[int]]:
    """``prompt``: a string, a list of strings, a list of token ids or a list of such lists."""
    one_ids = isinstance(value, list) and value and all(isinstance(x, int) and not isinstance(x, bool) for x in value)
    if isinstance(value, str) or one_ids:
        value = [value]
    if not isinstance(value, list) or not value:
        raise BadRequest("prompt: must be a string, a list of strings, or a list of token ids (or of such lists)")
    out = []
    for i, p in enumerate(value):
        if isinstance(p, str):
            # Taken as is, no BOS added: chat templates carry their own special tokens (as the local decoder does).
            ids = list(served.tok(p, add_special_tokens=False)["input_ids"])
        elif isinstance(p, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in p):
            ids = p
        else:
            raise BadRequest(f"prompt[{i}]: must be a string or a list of token ids")
        if not ids:
            raise BadRequest(f"prompt[{i}]: empty")
        bad = next((x for x in ids if not 0 <= x < served.vocab), None)
        if bad is not None:
            raise BadRequest(f"prompt[{i}]: token id {bad} is outside the vocabulary [0, {served.vocab - 1}]")
        out.append(ids)
    return out


def _common(body: dict[str, Any], served: ServedModel, default_max_tokens: int) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    model = body.get("model")
    if model != served.name:
        raise BadRequest(f"model={model!r}: this server serves {served.name!r}", 404 if model else 400)
    for name, allowed in UNSUPPORTED.items():
        if body.get(name, allowed) not in (allowed, None):
            raise BadRequest(f"{name}={body[name]!r}: not supported (only {allowed!r})")
    temperature = body.get("temperature", 1.0)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
            math.isfinite(temperature) and 0 <= temperature <= 2):
        raise BadRequest(f"temperature={temperature!r}: must be a number in [0, 2]")
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if stop is not None else []
    if not isinstance(stops, list) or len(stops) > 4 or not all(isinstance(s, str) and s for s in stops):
        raise BadRequest(f"stop={stop!r}: must be a non-empty string or a list of at most 4")
    return {"max_tokens": _int(body, "max_tokens", default_max_tokens, 1, served.max_len),
            "temperature": float(temperature), "stop": stops, "seed": _int(body, "seed", None, 0, 2**63 - 1)}


def _check_length(prompt: list[int], max_tokens: int, served: ServedModel, what: str) -> None:
    """A prompt whose tokens plus ``max_tokens`` exceed the model's positions is the client's error (400), not
    a failure inside the model (500)."""
    if len(prompt) + max_tokens > served.max_len:
        raise BadRequest(f"{what}: {len(prompt)} tokens + max_tokens={max_tokens} exceed the model's "
                         f"{served.max_len} positions")


def parse_completion(body: Any, served: ServedModel, default_max_tokens: int = 16) -> CompletionRequest:
    """A checked ``/v1/completions`` request (``logprobs``: up to the server's ``--max-logprobs``)."""
    common = _common(body, served, default_max_tokens)
    prompts = _prompts(body.get("prompt"), served)
    logprobs = _int(body, "logprobs", None, 0, served.max_logprobs)
    for i, p in enumerate(prompts):
        _check_length(p, common["max_tokens"], served, f"prompt[{i}]")
    return CompletionRequest(prompts, logprobs=logprobs, token_ids=bool(body.get("return_tokens_as_token_ids")),
                             **common)


def parse_chat(body: Any, served: ServedModel, default_max_tokens: int) -> tuple[list[dict[str, str]],
                                                                                  CompletionRequest]:
    """The messages and settings of a checked ``/v1/chat/completions`` request."""
    common = _common(body, served, default_max_tokens)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: must be a non-empty list of {role, content}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") or not isinstance(
                m.get("content"), str):
            raise BadRequest(f"messages[{i}]: must be {{role: system|user|assistant, content: string}}")
    checked = [{"role": m["role"], "content": m["content"]} for m in messages]
    ids = served.chat_prompt(checked)
    _check_length(ids, common["max_tokens"], served, "messages (with the chat template)")
    return checked, CompletionRequest([ids], logprobs=None, **common)
