"""What annotation and teacher evaluation need of a teacher, and the registry of backends that provide one.

A :class:`Teacher` answers pairs in the ``Reasoning: … / Label: …`` format with label probabilities and says
what it is; it need not be trainable.  The local causal LM (:class:`distillery.teacher.inference.Teacher`:
``tiny``, ``smollm2``, a directory written by ``distillery teacher`` or any Hugging Face causal LM) is one
backend; an inference-only one (an OpenAI-compatible endpoint, vLLM) registers a name prefix with
:func:`register` and is then accepted wherever a teacher is named (``--teacher``, the pipeline's teacher).

    from distillery.config import load_config
    from distillery.teacher.protocol import open_teacher

    teacher = open_teacher("tiny", load_config("tiny"))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from distillery.config import Config

if TYPE_CHECKING:
    from distillery.data.schema import LabelSet, Pair


@runtime_checkable
class Teacher(Protocol):
    """A teacher that annotates and is evaluated: answers in input order, one per pair.

    Each answer has ``label`` (a class of ``label_set`` or ``None``), ``label_probs`` (aligned with the
    classes), ``reasoning``, ``raw``, ``parse_error``, ``prompt_tokens`` and ``generated_tokens``, as
    :class:`distillery.teacher.inference.TeacherAnswer` does.
    """

    label_set: LabelSet

    def answer(self, pairs: list[Pair], batch_size: int | None = None, progress: bool = False) -> Sequence[Any]: ...

    def identity(self) -> dict[str, Any]:
        """Everything that determines the answers (model, weights or endpoint, prompt and decoding settings)."""
        ...


Backend = Callable[[str, Config], Teacher]
"""(the name after the backend's prefix, config) → a teacher."""

BACKENDS: dict[str, Backend] = {}
"""Name prefix → backend (a backend registered as ``openai`` answers ``openai:URL,…``; the package's engines,
``openai`` and ``vllm``, register in :mod:`distillery.teacher.engines`); a name without a registered prefix is a
local model."""


def register(prefix: str) -> Callable[[Backend], Backend]:
    """Register an inference-only backend under ``prefix:`` (e.g. ``@register("endpoint")``)."""
    def add(backend: Backend) -> Backend:
        BACKENDS[prefix] = backend
        return backend

    return add


def local(name: str, cfg: Config) -> Teacher:
    """``tiny``, ``smollm2``, a teacher directory or a Hugging Face causal LM, loaded for generation."""
    from distillery.teacher.inference import load_teacher

    return load_teacher(name, cfg)


def open_teacher(name: str, cfg: Config) -> Teacher:
    """The teacher ``name`` designates: ``PREFIX:REST`` goes to a registered backend, anything else is local."""
    from distillery.teacher import engines  # noqa: F401  (registers openai: and vllm:)

    prefix, sep, rest = name.partition(":")
    if sep and prefix in BACKENDS:
        return BACKENDS[prefix](rest, cfg)
    return local(name, cfg)
