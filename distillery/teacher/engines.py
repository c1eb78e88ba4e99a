"""Registers the inference-engine teacher backends (``openai:``, ``vllm:``) with the protocol's registry.

Imported by :func:`distillery.teacher.protocol.open_teacher` and the CLI's teacher check; it stays light (the
backends' modules, and torch/transformers with them, load only when one is opened)::

    from distillery.teacher import engines  # noqa: F401  (registers openai: and vllm:)
"""

from __future__ import annotations

from distillery.config import Config
from distillery.teacher.protocol import Teacher, register


@register("openai")
def openai(rest: str, cfg: Config) -> Teacher:
    """``openai:URL[,model=NAME,…]``: an OpenAI-compatible completions endpoint."""
    from distillery.teacher.openai_backend import open_openai

    return open_openai(rest, cfg)


@register("vllm")
def vllm(rest: str, cfg: Config) -> Teacher:
    """``vllm:MODEL[,key=value…]``: vLLM's offline engine in this process (where vllm is installed)."""
    from distillery.teacher.vllm_backend import open_vllm

    return open_vllm(rest, cfg)
