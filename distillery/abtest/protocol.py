"""The splitter's request format and size limits (pure functions, unit-tested without a server).

``POST /v1/relevance`` takes ``{"user_id": str, "query": str, "items": [ITEM, ...]}`` where an ITEM is
either a string (the item text; its id is its position) or ``{"id": str, "text": str}`` or
``{"id": str, "title": ..., "brand": ..., ...}`` (passed to Triton as a JSON object, which the server
joins with the student's own ``item_fields``, exactly as in training).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

ITEM_TEXT_FIELDS = ("title", "brand", "color", "attributes", "bullet_points", "description")


class BadRequest(ValueError):
    """A request the splitter refuses; ``status`` is 400 (malformed) or 413 (over a size limit)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """Request size limits."""

    max_body_bytes: int = 1 << 20
    max_items: int = 200
    max_query_chars: int = 1000
    max_item_chars: int = 4000
    max_user_id_chars: int = 256


@dataclass(frozen=True)
class RelevanceRequest:
    user_id: str
    query: str
    item_ids: list[str]
    item_texts: list[str]


def _item(i: int, raw: Any, limits: Limits) -> tuple[str, str]:
    if isinstance(raw, str):
        item_id, text = str(i), raw
    elif isinstance(raw, dict):
        item_id = raw.get("id", str(i))
        if not isinstance(item_id, str | int):
            raise BadRequest(f"items[{i}].id: must be a string")
        if "text" in raw:
            text = raw["text"]
        else:
            # Passed on as a JSON object: the Triton tokenizer joins it with the student's own item_fields.
            fields = {f: str(raw[f]) for f in ITEM_TEXT_FIELDS if str(raw.get(f) or "").strip()}
            text = json.dumps(fields, ensure_ascii=False) if fields else ""
        if not isinstance(text, str):
            raise BadRequest(f"items[{i}].text: must be a string")
        item_id = str(item_id)
    else:
        raise BadRequest(f"items[{i}]: must be a string or an object with id and text (or item fields)")
    if not text.strip():
        raise BadRequest(f"items[{i}]: empty item text")
    if len(text) > limits.max_item_chars:
        raise BadRequest(f"items[{i}]: {len(text)} characters > limit {limits.max_item_chars}", 413)
    return item_id, text


def parse_request(body: bytes, limits: Limits) -> RelevanceRequest:
    """Validate a request body; every refusal names the field and the limit."""
    if len(body) > limits.max_body_bytes:
        raise BadRequest(f"body of {len(body)} bytes > limit {limits.max_body_bytes}", 413)
    try:
        obj = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise BadRequest("body must be a JSON object with user_id, query, items")
    unknown = sorted(set(obj) - {"user_id", "query", "items"})
    if unknown:
        raise BadRequest(f"unknown field(s) {unknown} (expected user_id, query, items)")
    user_id, query, items = obj.get("user_id"), obj.get("query"), obj.get("items")
    if isinstance(user_id, int) and not isinstance(user_id, bool):
        user_id = str(user_id)
    if not isinstance(user_id, str) or not user_id:
        raise BadRequest("user_id: required, a non-empty string")
    if len(user_id) > limits.max_user_id_chars:
        raise BadRequest(f"user_id: {len(user_id)} characters > limit {limits.max_user_id_chars}", 413)
    if not isinstance(query, str) or not query.strip():
        raise BadRequest("query: required, a non-empty string")
    if len(query) > limits.max_query_chars:
        raise BadRequest(f"query: {len(query)} characters > limit {limits.max_query_chars}", 413)
    if not isinstance(items, list) or not items:
        raise BadRequest("items: required, a non-empty list")
    if len(items) > limits.max_items:
        raise BadRequest(f"items: {len(items)} items > limit {limits.max_items}", 413)
    parsed = [_item(i, raw, limits) for i, raw in enumerate(items)]
    ids = [p[0] for p in parsed]
    if len(set(ids)) != len(ids):
        raise BadRequest("items: ids must be unique")
    return RelevanceRequest(user_id, query, ids, [p[1] for p in parsed])


def ranking(scores: list[float]) -> list[int]:
    """Item indices by descending score; ties keep the request's order (stable)."""
    return sorted(range(len(scores)), key=lambda i: -scores[i])
