"""The distillation methods are listed once (distillery.student.methods) and every caller offers exactly those."""

from __future__ import annotations

import argparse

import pytest
import torch

from distillery.cli import build_parser
from distillery.config import load_config
from distillery.data.schema import THREE_CLASS
from distillery.student import methods
from distillery.student.model import build_student, encode
from distillery.student.trainer import Example


def _method_choices(command: str) -> tuple[str, ...]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    (action,) = [a for a in sub.choices[command]._actions if a.dest == "method"]
    return tuple(action.choices or ())


def test_the_distill_command_offers_the_registered_methods() -> None:
    assert _method_choices("distill") == methods.NAMES == ("crsd", "hard", "soft", "human", "human-all")
    assert methods.PIPELINE_NAMES == ("crsd", "hard", "soft", "human")  # human-all reads the hidden log labels


def test_an_unknown_method_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="--method 'ppo': must be one of crsd, hard, soft, human, human-all"):
        methods.get("ppo")


def test_what_each_method_learns_from() -> None:
    cfg = load_config("tiny")
    assert [m for m in methods.NAMES if not methods.get(m).uses_annotations] == ["human", "human-all"]
    assert methods.get("soft").soft_labels(cfg) and not methods.get("hard").soft_labels(cfg)
    assert methods.get("crsd").soft_labels(cfg) == (cfg.distill.labels == "soft")


@pytest.mark.parametrize("name", methods.NAMES)
def test_every_method_builds_a_finite_loss(name: str) -> None:
    cfg = load_config("tiny", overrides={"distill": {"reasoning_tokens": 8}})
    tokenizer, model = build_student(cfg.student, THREE_CLASS, seed=0)
    batch = [Example("red kettle", "Acme red kettle", 0, soft=[0.8, 0.1, 0.1], extra={"reasoning": "red, a kettle"}),
             Example("red kettle", "blue mug", 2, soft=[0.1, 0.1, 0.8], extra={"reasoning": "a mug"})]
    inputs = encode(tokenizer, [e.query for e in batch], [e.item for e in batch], cfg.student.max_length)
    loss = methods.get(name).loss(tokenizer, cfg, None)(model, batch, inputs)
    assert torch.isfinite(loss) and loss.requires_grad
