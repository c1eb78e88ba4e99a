"""The ``key=value`` options of an engine teacher's spec (``openai:URL,…``, ``vllm:MODEL,…``), parsed once for both.

A key is either a ``teacher`` config field it overrides (checked by the config's own validation) or one of the
backend's own options (typed by its default); any error is one line naming the spec and the key::

    from distillery.config import load_config
    from distillery.teacher.engine_spec import parse_options

    cfg, own = parse_options("--teacher vllm:/m,logprobs=7,tensor_parallel=2", ["logprobs=7", "tensor_parallel=2"],
                             load_config("tiny"), {"logprobs": "endpoint_logprobs"}, {"tensor_parallel": 1})
    # cfg.teacher.endpoint_logprobs == 7, own == {"tensor_parallel": 2}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from distillery.config import Config, ConfigError


def _typed(where: str, key: str, value: str, like: Any) -> Any:
    kind = type(like)
    if kind is str:
        return value
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{where}: {key}={value!r} is not {'an integer' if kind is int else 'a number'}") from None


def parse_options(where: str, opts: Sequence[str], cfg: Config, fields: Mapping[str, str],
                  own: Mapping[str, Any]) -> tuple[Config, dict[str, Any]]:
    """(``cfg`` with the ``fields`` keys applied to ``cfg.teacher``, the ``own`` keys given, typed like their
    defaults); ``where`` (the whole spec) starts every error."""
    values: dict[str, Any] = {}
    given: dict[str, Any] = {}
    for opt in opts:
        key, sep, value = opt.partition("=")
        if not sep or not value:
            raise ValueError(f"{where}: {opt!r} is not key=value")
        if key in own:
            given[key] = _typed(where, key, value, own[key])
        elif key in fields:
            values[fields[key]] = _typed(where, key, value, getattr(cfg.teacher, fields[key]))
        else:
            raise ValueError(f"{where}: unknown key {key!r} (known: {', '.join([*own, *fields])})")
    try:
        teacher = replace(cfg.teacher, **values)
    except ConfigError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return replace(cfg, teacher=teacher), given
