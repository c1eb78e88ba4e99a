"""The reasoning view whatever the teacher wrote: a runaway reasoning keeps its budget and the standard view's
query and item tokens, an empty (or blank, or control-character) one leaves the row to the standard view,
and no row outgrows the encoder's positions."""

from __future__ import annotations

import math

import pytest
import torch

from distillery.config import load_config
from distillery.data.schema import THREE_CLASS
from distillery.student.crsd import crsd_loss_fn, encode_reasoning_view, label_loss_fn
from distillery.student.model import build_student, encode
from distillery.student.trainer import Example

QUERY, ITEM = "cheap dog grooming near wangjing", "Paws Pet Salon | pet grooming | premium"
RUNAWAY = " ".join(["the query asks for cheap grooming and this salon is premium"] * 2000)  # ~20k tokens


@pytest.fixture(scope="module")
def tiny():
    cfg = load_config("tiny", overrides={"distill": {"reasoning_tokens": 16}})
    tokenizer, model = build_student(cfg.student, THREE_CLASS, seed=0)
    return cfg, tokenizer, model


def row(view: dict[str, torch.Tensor], n: int = 0) -> list[int]:
    return view["input_ids"][n][view["attention_mask"][n].bool()].tolist()


def test_an_over_long_reasoning_keeps_its_budget_and_the_standard_tokens(tiny):
    cfg, tok, _ = tiny
    max_length, budget = cfg.student.max_length, cfg.distill.reasoning_tokens
    std = row(encode(tok, [QUERY], [ITEM], max_length))
    ids = row(encode_reasoning_view(tok, [QUERY], [ITEM], [RUNAWAY], max_length, budget))
    assert ids[:len(std)] == std and len(ids) == len(std) + budget + 1
    assert ids[len(std):-1] == tok(RUNAWAY[:2000], add_special_tokens=False)["input_ids"][:budget]
    # the encoder's position table caps the row, the query and item still first
    small = row(encode_reasoning_view(tok, [QUERY], [ITEM], [RUNAWAY], max_length, 500, max_positions=40))
    assert len(small) == 40 and small[:len(std)] == std and small[-1] == tok.sep_token_id


@pytest.mark.parametrize("reasoning", ["", "   \n\t", "\x00\x01\x1b", "\ud800"])
def test_an_empty_reasoning_adds_nothing_to_the_row(tiny, reasoning):
    cfg, tok, _ = tiny
    std = row(encode(tok, [QUERY], [ITEM], cfg.student.max_length))
    view = encode_reasoning_view(tok, [QUERY], [ITEM], [reasoning], cfg.student.max_length,
                                 cfg.distill.reasoning_tokens)
    assert row(view) == std


def test_the_loss_runs_on_runaway_empty_and_odd_reasonings(tiny):
    cfg, tok, model = tiny
    model.eval()
    batch = [Example(QUERY, ITEM, 0, extra={"reasoning": RUNAWAY}),
             Example("hotpot with private rooms", "Lucky Car Wash | car wash", 2,
                     extra={"reasoning": "a car wash \ud800\x00is not a restaurant"}),
             Example("thai massage", "Jade Thai Massage Spa | spa", 1, extra={"reasoning": "  \x00 "})]
    inputs = encode(tok, [e.query for e in batch], [e.item for e in batch], cfg.student.max_length)
    loss = crsd_loss_fn(tok, cfg.student, cfg.distill, None)(model, batch, inputs)
    assert math.isfinite(loss.item())
    loss.backward()
    model.zero_grad()
    # rows whose reasoning is blank after cleaning join only the standard CE
    blank = [Example(QUERY, ITEM, 0, extra={"reasoning": " \x00\n"}), Example(QUERY, ITEM, 1, extra={})]
    inputs = encode(tok, [e.query for e in blank], [e.item for e in blank], cfg.student.max_length)
    crsd = crsd_loss_fn(tok, cfg.student, cfg.distill, None)(model, blank, inputs)
    assert crsd.item() == label_loss_fn(False, None)(model, blank, inputs).item()
