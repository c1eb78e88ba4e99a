"""The distillation methods, listed once: name → what the student learns from and its loss.

``distillery distill --method`` offers :data:`NAMES`, ``distillery run`` / the pipeline :data:`PIPELINE_NAMES`,
and :func:`distillery.student.distill.run_distill` looks the method up here (:func:`get`).  A new method is
one row of :data:`METHODS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from distillery.config import Config

if TYPE_CHECKING:
    import torch

    from distillery.student.trainer import LossFn

# Losses import torch: built on use, so that listing the methods (the CLI's --method choices) stays cheap.
LossBuilder = Callable[[Any, Config, "torch.Tensor | None"], "LossFn"]
"""(student tokenizer, config, class weights or None) → the loss :func:`distillery.student.trainer.fit` uses."""


@dataclass(frozen=True)
class Method:
    name: str
    help: str
    loss: LossBuilder
    human_split: str | None = None
    """``seed`` or ``train``: trains on these human labels and needs no annotations; ``None``: teacher labels."""
    soft_labels: Callable[[Config], bool] = lambda cfg: False
    """Whether the teacher's targets are its ``label_probs`` (they must match the label set)."""
    in_pipeline: bool = True
    """Offered by ``distillery run`` (``human-all`` reads the hidden log labels: a reference, not a product)."""

    @property
    def uses_annotations(self) -> bool:
        return self.human_split is None


def _labels(soft: bool) -> LossBuilder:
    def build(tokenizer: Any, cfg: Config, weights: torch.Tensor | None) -> LossFn:
        from distillery.student.crsd import label_loss_fn

        return label_loss_fn(soft, weights)

    return build


def _crsd(tokenizer: Any, cfg: Config, weights: torch.Tensor | None) -> LossFn:
    from distillery.student.crsd import crsd_loss_fn

    return crsd_loss_fn(tokenizer, cfg.student, cfg.distill, weights)


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("crsd", "Contrastive Reasoning Self-Distillation: both views, alignment, in-batch InfoNCE", _crsd,
           soft_labels=lambda cfg: cfg.distill.labels == "soft"),
    Method("hard", "cross-entropy to the teacher's labels of the log pairs", _labels(False)),
    Method("soft", "soft-label KD to the teacher's label_probs", _labels(True), soft_labels=lambda cfg: True),
    Method("human", "fine-tune on the human seed labels only (baseline)", _labels(False), human_split="seed"),
    Method("human-all", "fine-tune on the human labels of every training pair (upper reference)", _labels(False),
           human_split="train", in_pipeline=False),
)}
NAMES = tuple(METHODS)
PIPELINE_NAMES = tuple(n for n, m in METHODS.items() if m.in_pipeline)


def get(name: str) -> Method:
    """The method called ``name``; an unknown name fails with the list of known ones."""
    if name not in METHODS:
        raise ValueError(f"--method {name!r}: must be one of {', '.join(NAMES)}")
    return METHODS[name]
