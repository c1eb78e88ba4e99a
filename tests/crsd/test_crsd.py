"""The CRSD loss: InfoNCE by hand, gradients from both views, λ=0 ⇒ two CE terms, the reasoning view's budgets."""

from __future__ import annotations

import math

import pytest
import torch

from distillery.config import load_config
from distillery.data.schema import THREE_CLASS
from distillery.student.crsd import (
    align_loss,
    cls_forward,
    crsd_loss_fn,
    encode_reasoning_view,
    info_nce,
    label_loss_fn,
    target_ce,
)
from distillery.student.model import build_student, encode
from distillery.student.trainer import Example


def test_info_nce_matches_a_hand_computed_3x3_value():
    h = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    h_r = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0]])  # norms differ: only directions count
    s = 1 / math.sqrt(2)  # cosines: row i of h against column j of h_r
    # S = [[1, s, 0], [0, s, 1], [s, 1, s]];  τ = 0.5 doubles every entry
    e = math.exp
    rows = [-2 + math.log(e(2) + e(2 * s) + e(0)),
            -2 * s + math.log(e(0) + e(2 * s) + e(2)),
            -2 * s + math.log(e(2 * s) + e(2) + e(2 * s))]
    cols = [-2 + math.log(e(2) + e(0) + e(2 * s)),
            -2 * s + math.log(e(2 * s) + e(2 * s) + e(2)),
            -2 * s + math.log(e(0) + e(2) + e(2 * s))]
    expected = (sum(rows) / 3 + sum(cols) / 3) / 2
    assert info_nce(h, h_r, 0.5).item() == pytest.approx(expected, abs=1e-6)


def test_align_distances():
    h = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    h_r = torch.tensor([[0.0, 1.0], [0.0, 4.0]])
    assert align_loss(h, h_r, "mse").item() == pytest.approx((1 + 1 + 0 + 4) / 4)
    assert align_loss(h, h_r, "cosine").item() == pytest.approx((1 - 0 + 1 - 1) / 2)


def test_soft_ce_is_weighted_ce_for_one_hot_targets():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.3]])
    batch = [Example("q", "i", 0), Example("q", "i", 2)]
    w = torch.tensor([0.5, 1.0, 2.0])
    assert target_ce(logits, batch, True, w).item() == pytest.approx(target_ce(logits, batch, False, w).item())


@pytest.fixture()
def tiny():
    cfg = load_config("tiny", overrides={"distill": {"reasoning_tokens": 16}})
    tokenizer, model = build_student(cfg.student, THREE_CLASS, seed=0)
    batch = [
        Example("thai massage near sanlitun", "Jade Thai Massage Spa | spa", 0,
                soft=[0.7, 0.2, 0.1], extra={"reasoning": "spa in sanlitun offering thai massage: every intent met"}),
        Example("cheap dog grooming", "Paws Pet Salon | pet grooming", 1,
                soft=[0.2, 0.6, 0.2], extra={"reasoning": "right category but premium price"}),
        Example("hotpot with private rooms", "Lucky Car Wash | car wash", 2,
                soft=[0.05, 0.15, 0.8], extra={"reasoning": "a car wash is not a restaurant"}),
    ]
    inputs = encode(tokenizer, [e.query for e in batch], [e.item for e in batch], cfg.student.max_length)
    return cfg, tokenizer, model, batch, inputs


def test_both_views_send_gradients_into_the_shared_encoder(tiny):
    cfg, tokenizer, model, batch, inputs = tiny
    captured: list[torch.Tensor] = []

    def keep(_module, _inp, out):
        out.retain_grad()
        captured.append(out)

    handle = model.bert.embeddings.register_forward_hook(keep)
    loss = crsd_loss_fn(tokenizer, cfg.student, cfg.distill, None)(model, batch, inputs)
    loss.backward()
    handle.remove()
    assert len(captured) == 2  # standard view, then reasoning view, through the same embeddings
    std, rsn = captured
    assert std.shape[1] < rsn.shape[1]
    assert std.grad is not None and std.grad.abs().sum() > 0
    assert rsn.grad is not None and rsn.grad.abs().sum() > 0
    assert model.bert.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("labels", ["hard", "soft"])
def test_zero_lambdas_leave_exactly_the_two_ce_terms(tiny, labels):
    cfg, tokenizer, model, batch, inputs = tiny
    model.eval()  # no dropout: both computations see the same forward passes
    dcfg = cfg.distill
    dcfg.labels, dcfg.lambda_align, dcfg.lambda_batch = labels, 0.0, 0.0
    w = torch.tensor([1.0, 2.0, 0.5])
    loss = crsd_loss_fn(tokenizer, cfg.student, dcfg, w)(model, batch, inputs)
    r_inputs = encode_reasoning_view(tokenizer, [e.query for e in batch], [e.item for e in batch],
                                     [e.extra["reasoning"] for e in batch], cfg.student.max_length,
                                     dcfg.reasoning_tokens)
    soft = labels == "soft"
    two_ce = target_ce(model(**inputs).logits, batch, soft, w) + target_ce(model(**r_inputs).logits, batch, soft, w)
    assert loss.item() == two_ce.item()
    # and the other terms are really added when switched on
    dcfg.lambda_align, dcfg.lambda_batch = 0.5, 0.25
    logits, h = cls_forward(model, inputs)
    _, h_r = cls_forward(model, r_inputs)
    full = two_ce + 0.5 * align_loss(h, h_r, dcfg.align) + 0.25 * info_nce(h, h_r, dcfg.tau)
    assert crsd_loss_fn(tokenizer, cfg.student, dcfg, w)(model, batch, inputs).item() == pytest.approx(full.item())
    dcfg.reasoning_view_ce = False
    no_rce = (target_ce(logits, batch, soft, w) + 0.5 * align_loss(h, h_r, dcfg.align)
              + 0.25 * info_nce(h, h_r, dcfg.tau))
    assert crsd_loss_fn(tokenizer, cfg.student, dcfg, w)(model, batch, inputs).item() == pytest.approx(no_rce.item())


def test_rows_without_reasoning_join_only_the_standard_ce(tiny):
    cfg, tokenizer, model, batch, inputs = tiny
    model.eval()
    for e in batch:
        e.extra["reasoning"] = ""
    crsd = crsd_loss_fn(tokenizer, cfg.student, cfg.distill, None)(model, batch, inputs)
    assert crsd.item() == label_loss_fn(False, None)(model, batch, inputs).item()


def test_reasoning_view_keeps_the_standard_query_and_item_tokens(tiny):
    _, tokenizer, _, _, _ = tiny
    query, item = "cheap dog grooming near wangjing", " ".join(["Paws Pet Salon with a very long title"] * 12)
    reasoning = " ".join(["the query asks for cheap grooming and this item is premium"] * 10)
    std = encode(tokenizer, [query], [item], 32)["input_ids"][0].tolist()
    view = encode_reasoning_view(tokenizer, [query], [item], [reasoning], 32, 20)
    ids = view["input_ids"][0].tolist()
    assert len(std) == 32 and ids[:32] == std  # query and item budgets untouched by the reasoning
    assert len(ids) == 32 + 20 + 1 and ids[-1] == tokenizer.sep_token_id
    r_ids = tokenizer(reasoning, add_special_tokens=False)["input_ids"][:20]
    assert ids[32:52] == r_ids
    assert view["token_type_ids"][0].tolist() == [0] * std.index(tokenizer.sep_token_id, 1) + [0] + [1] * (
        len(ids) - std.index(tokenizer.sep_token_id, 1) - 1)
