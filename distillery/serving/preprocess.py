"""Request parsing and tokenising for the Triton ``tokenizer`` model (runs inside the python-backend stub).

The inputs built here are the ones :func:`distillery.student.model.encode` builds in-process: the
student's own fast tokenizer (``tokenizer.json``), (query, item text) pairs, only the item truncated to
``max_length``, padded to the longest pair of the request.  This module imports numpy and ``tokenizers``
only, because the stub's environment holds nothing else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

META_FILE = "distillery.json"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def int_parameter(model_config: str, key: str) -> int:
    """An integer ``parameters`` entry of a Triton model config (the JSON the python backend receives); 0 if absent."""
    params = json.loads(model_config).get("parameters", {})
    return int(params.get(key, {}).get("string_value", "0"))


class RequestError(ValueError):
    """A request the tokenizer cannot serve; the message names the input and the row."""


def decode_text_tensor(name: str, arr: np.ndarray | None) -> list[str]:
    """A BYTES tensor of shape (batch,) or (batch, 1) → one UTF-8 string per row."""
    if arr is None:
        raise RequestError(f"input {name!r} is missing")
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise RequestError(f"input {name!r}: expected shape (batch, 1), got {tuple(arr.shape)}")
    out = []
    for row, value in enumerate(arr.tolist()):
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RequestError(f"input {name!r} row {row}: not UTF-8 ({exc.reason})") from None
        out.append(str(value))
    return out


def item_text(value: str, fields: list[str]) -> str:
    """An item as the student saw it in training.

    A JSON object (``{"title": ..., "brand": ...}``) is joined like ``Pair.item_text``: the student's
    ``item_fields`` in order, empty ones left out, `` | `` between; any other string is taken as the
    already-joined item text.
    """
    stripped = value.lstrip()
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError:
            return value
        if isinstance(obj, dict):
            parts = [str(obj.get(f) or "").strip() for f in fields]
            return " | ".join(p for p in parts if p)
    return value


@dataclass
class TextEncoder:
    """The student's tokenizer configured exactly as ``encode`` calls it."""

    tokenizer: Any
    item_fields: list[str]
    max_length: int

    @classmethod
    def from_dir(cls, model_dir: str | Path, pad_to: int = 0) -> TextEncoder:
        """Load ``tokenizer.json``, ``tokenizer_config.json`` and ``distillery.json`` from a student dir.

        ``pad_to`` > 0 pads every pair to that length (fixed shapes, e.g. for a benchmark or an engine
        built for one length) instead of to the longest pair of the request.
        """
        from tokenizers import Tokenizer

        d = Path(model_dir)
        if not (d / "tokenizer.json").exists():
            raise FileNotFoundError(f"{d}: no tokenizer.json (the student must use a fast tokenizer)")
        if not (d / META_FILE).exists():
            raise FileNotFoundError(f"{d}: no {META_FILE} (not a distillery model directory)")
        meta = json.loads((d / META_FILE).read_text(encoding="utf-8"))
        tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        pad_token = "[PAD]"
        cfg_file = d / "tokenizer_config.json"
        if cfg_file.exists():
            pad_token = json.loads(cfg_file.read_text(encoding="utf-8")).get("pad_token") or pad_token
        pad_id = tok.token_to_id(pad_token)
        if pad_id is None:
            raise ValueError(f"{d}: pad token {pad_token!r} is not in the vocabulary")
        # The saved tokenizer.json may carry its own padding/truncation state (MiniLM's pads to a fixed
        # 128); replace it with what the HF call in `encode` sets.
        tok.no_padding()
        tok.enable_truncation(max_length=int(meta["max_length"]), strategy="only_second")
        tok.enable_padding(pad_id=pad_id, pad_token=pad_token, length=pad_to or None)
        return cls(tok, list(meta["item_fields"]), int(meta["max_length"]))

    def encode(self, queries: list[str], items: list[str]) -> dict[str, np.ndarray]:
        """int64 ``input_ids``, ``attention_mask``, ``token_type_ids`` of shape (batch, longest)."""
        if len(queries) != len(items):
            raise RequestError(f"QUERY has {len(queries)} rows but ITEM has {len(items)}")
        texts = [item_text(t, self.item_fields) for t in items]
        try:
            encs = self.tokenizer.encode_batch(list(zip(queries, texts, strict=True)))
        except Exception as exc:  # the Rust error says which constraint failed, not which row
            raise RequestError(f"cannot tokenise the batch within max_length={self.max_length}: {exc}") from None
        return {
            "input_ids": np.array([e.ids for e in encs], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encs], dtype=np.int64),
        }

    def encode_request(self, query: np.ndarray | None, item: np.ndarray | None) -> dict[str, np.ndarray]:
        """A Triton request's ``QUERY`` and ``ITEM`` BYTES tensors → the student's input tensors."""
        return self.encode(decode_text_tensor("QUERY", query), decode_text_tensor("ITEM", item))
