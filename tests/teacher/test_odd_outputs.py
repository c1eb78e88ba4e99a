"""No teacher stage crashes on the length or content of a model's output: the reward model (scoring and
training), DPO pair building and SFT examples truncate with budgets that keep the label line, or skip with
a named, counted reason."""

from __future__ import annotations

import math
from collections import Counter
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from distillery.config import REWARD_DIMENSIONS, load_config
from distillery.data import THREE_CLASS, Pair, load_pairs
from distillery.teacher import dpo, sft
from distillery.teacher.dpo import build_preferences, preference_pairs
from distillery.teacher.endpoint import EndpointClient
from distillery.teacher.inference import TeacherAnswer
from distillery.teacher.model import smollm2_tokenizer
from distillery.teacher.prompt import (
    PromptBuilder,
    answer_ids,
    clean_text,
    fit_answer,
    format_answer,
    parse_answer,
    parse_error_code,
)
from distillery.teacher.reward import (
    ANSWER_SHARE,
    RewardModel,
    RewardScorer,
    build_encoder,
    fit_reward,
    reward_inputs,
)
from distillery.teacher.trainers import trl_args, use_bf16

MAX_LENGTH = 48


@pytest.fixture(scope="module")
def scorer_parts() -> tuple[Any, Any]:
    return build_encoder("tiny", 0)


def scorer(parts: tuple[Any, Any], max_length: int = MAX_LENGTH) -> RewardScorer:
    tok, enc = parts
    return RewardScorer(tok, RewardModel(enc), max_length, [1.0, 1.0, 1.0, 0.5, 0.5])


def long_answer(tok: Any, factor: int = 10, label: str = "Partial") -> str:
    """An answer of about ``factor × MAX_LENGTH`` reward-model tokens ending in a label line."""
    words = ["the item meets the need for blue running shoes"] * (factor * MAX_LENGTH // 8)
    text = format_answer(" ".join(words), label)
    assert len(tok(text, add_special_tokens=False)["input_ids"]) >= factor * MAX_LENGTH
    return text


def pairs(n: int = 4) -> list[Pair]:
    return [p for p in load_pairs("synthetic:60") if p.label][:n]


def test_reward_scores_an_answer_ten_times_its_max_length(scorer_parts):
    sc = scorer(scorer_parts)
    tok = sc.tokenizer
    ps = pairs(2)
    answers = [long_answer(tok), "Reasoning: short.\nLabel: Exact"]
    enc = sc.encode(ps, answers)
    assert enc["input_ids"].shape[1] <= MAX_LENGTH and int(enc["attention_mask"].sum(1).max()) <= MAX_LENGTH
    row = enc["input_ids"][0][enc["attention_mask"][0].bool()].tolist()
    # the pair's query comes first, whole; the answer ends with its label line, then [SEP]
    query = tok(ps[0].query, add_special_tokens=False)["input_ids"]
    assert row[0] == tok.cls_token_id and row[1:1 + len(query)] == query
    label_line = tok("Label: Partial", add_special_tokens=False)["input_ids"]
    assert row[-1 - len(label_line):-1] == label_line and row[-1] == tok.sep_token_id
    # the context is short: kept whole, and the answer (head of the reasoning + label line) takes the rest
    ctx = tok(reward_inputs(ps[0]), add_special_tokens=False)["input_ids"]
    ans, cut = answer_ids(tok, answers[0], MAX_LENGTH - 3 - len(ctx))
    assert cut and row == [tok.cls_token_id, *ctx, tok.sep_token_id, *ans, tok.sep_token_id]
    assert len(row) == MAX_LENGTH and sc.truncated == Counter(answer=1)
    # the short answer is encoded as the tokenizer encodes the pair
    short = tok(reward_inputs(ps[1]), answers[1])["input_ids"]
    assert enc["input_ids"][1][: len(short)].tolist() == short
    scores = sc.score(ps, answers)
    assert scores.shape == (2, len(REWARD_DIMENSIONS)) and np.isfinite(scores).all()


def test_reward_trains_on_answers_ten_times_its_max_length(scorer_parts):
    cfg = load_config("tiny", overrides={"teacher": {"reward": {"epochs": 2, "batch_size": 4, "lr": 1e-3}}})
    sc = scorer(scorer_parts)
    ps = pairs(4)
    answers = [long_answer(sc.tokenizer, label=lab) for lab in ("Exact", "Partial")] + ["", "Label: \x00\ud800"]
    targets = np.random.default_rng(0).random((4, len(REWARD_DIMENSIONS)))
    curve = fit_reward(sc, ps, answers, targets, cfg.teacher)
    assert len(curve) == 2 and all(math.isfinite(x) for x in curve)
    assert np.isfinite(sc.score(ps, answers)).all()


def test_reward_input_fits_the_position_table_and_odd_text(scorer_parts):
    sc = scorer(scorer_parts, max_length=4096)  # allowed by the config, longer than BERT's 512 positions
    assert sc.input_limit() == 512
    odd = ["", "\x00\x01\x7f", "x\ud800y", "Label: Exact " + "一" * 3000, "Reasoning:\n\n\nLabel:"]
    enc = sc.encode(pairs(1) * len(odd), odd)
    assert enc["input_ids"].shape[1] <= 512
    assert np.isfinite(sc.score(pairs(1) * len(odd), odd)).all()


def test_a_long_context_and_a_long_answer_share_the_budget(scorer_parts):
    sc = scorer(scorer_parts)
    p = pairs(1)[0]
    long_item = Pair(p.query_id, p.query, p.item_id, title=" ".join(["waterproof trail shoe"] * 200), label="Exact")
    text = long_answer(sc.tokenizer)
    row = sc.encode([long_item], [text])["input_ids"][0].tolist()
    tok = sc.tokenizer
    share = math.ceil((MAX_LENGTH - 3) * ANSWER_SHARE)
    ans, _ = answer_ids(tok, text, share)  # the answer's share, its label line kept
    ctx = tok(reward_inputs(long_item), add_special_tokens=False)["input_ids"][: MAX_LENGTH - 3 - share]
    assert row == [tok.cls_token_id, *ctx, tok.sep_token_id, *ans, tok.sep_token_id]
    assert len(row) == MAX_LENGTH and sc.truncated == Counter(answer=1, context=1)
    assert tok.decode(ctx).startswith(" ".join(long_item.query.lower().split()))  # the query first


def test_fit_answer_keeps_the_label_line_within_the_budget():
    tok = smollm2_tokenizer()
    text = format_answer("the item " + "is a blue shoe and " * 300, "Irrelevant")
    out, cut = fit_answer(tok, text, 24)
    assert cut and out.endswith("\nLabel: Irrelevant") and out.startswith("Reasoning: the item")
    assert len(tok(out, add_special_tokens=False)["input_ids"]) <= 24
    assert fit_answer(tok, "Reasoning: ok\nLabel: Exact", 24) == ("Reasoning: ok\nLabel: Exact", False)
    ids, cut = answer_ids(tok, text, 24)
    assert cut and len(ids) <= 24 and tok.decode(ids).endswith("Label: Irrelevant")
    # no label line at all, or one that alone is too long: still within the budget
    for odd in ("x" * 5000, "Label: " + "Exact " * 200, ""):
        assert len(tok(fit_answer(tok, odd, 16)[0], add_special_tokens=False)["input_ids"]) <= 16
    assert clean_text("a\x00b\ud800c\td\ne") == "abc\td\ne" and clean_text(None) == ""


def test_preference_pairs_name_why_a_prompt_gave_none():
    skipped: Counter[str] = Counter()
    prefs = preference_pairs(["p1", "p2", "p3", "p4"], [["", "x"], ["a", "b"], ["s", "s"], []],
                             [np.array([0.9, 0.1]), np.array([0.5, 0.51]), np.array([1.0, 0.0]), np.array([])],
                             0.05, [[True, True], [True, True], [True, True], []], skipped)
    assert prefs == [] and skipped == Counter(empty_chosen=1, tie=1, identical=1, no_answers=1)


class FakeTeacher:
    """What build_preferences needs of a teacher; samples over-long, empty and control-character answers."""

    def __init__(self, tok: Any, cfg: Any) -> None:
        meta = SimpleNamespace(max_prompt_tokens=cfg.teacher.max_prompt_tokens)
        self.tokenizer, self.meta = tok, meta
        self.prompter = PromptBuilder(tok, THREE_CLASS, ["title"], meta.max_prompt_tokens, 100)

    def sample(self, pairs: list[Pair], k: int, *args: Any, **kwargs: Any) -> list[list[TeacherAnswer]]:
        prompts = self.prompter.build(pairs)
        lengths = [len(ids) for ids in self.tokenizer(prompts, add_special_tokens=False)["input_ids"]]
        raws = [format_answer("it matches " * 400, "Exact"), "", "Reasoning: \x00\x1b[31mred\nLabel: Maybe"]
        return [[TeacherAnswer(None, [1 / 3] * 3, "", raws[i % 3], None if i == 0 else "bad", n, 24)
                 for i in range(k)] for n in lengths]


def test_dpo_pairs_from_over_long_empty_and_odd_answers(scorer_parts, monkeypatch):
    cfg = load_config("tiny", overrides={"teacher": {"samples_per_prompt": 3, "dpo_min_margin": 0.0}})
    tok = smollm2_tokenizer()
    ps = pairs(3)
    monkeypatch.setattr(dpo, "load_teacher", lambda *a, **k: FakeTeacher(tok, cfg))
    monkeypatch.setattr(dpo.RewardScorer, "load", classmethod(lambda cls, *a, **k: scorer(scorer_parts)))
    prefs, info = build_preferences(ps, cfg, "base", "reward")
    assert len(prefs) == 3 and info["pairs"] == 3 and sum(info["skipped"].values()) == 0
    assert info["completions_truncated"] == 3  # the long answer of each prompt, cut to max_new_tokens
    prompts = FakeTeacher(tok, cfg).prompter.build(ps)
    for pref, prompt, p in zip(prefs, prompts, ps, strict=True):
        assert pref["prompt"] == prompt and " ".join(p.query.split()) in pref["prompt"]  # the query whole
        assert pref["chosen"].endswith("\nLabel: Exact")  # the parsing answer, cut, its label line kept
        assert len(tok(pref["chosen"], add_special_tokens=False)["input_ids"]) <= cfg.teacher.max_new_tokens
        assert "\x00" not in pref["rejected"] and "\x1b" not in pref["rejected"]


def test_dpo_skips_a_prompt_over_its_budget_by_name(scorer_parts, monkeypatch):
    cfg = load_config("tiny", overrides={"teacher": {"samples_per_prompt": 3, "dpo_min_margin": 0.0}})
    tok = smollm2_tokenizer()
    ps = pairs(2)
    ps[0] = Pair(ps[0].query_id, "blue shoe " * 300, ps[0].item_id, title=ps[0].title, label=ps[0].label)
    monkeypatch.setattr(dpo, "load_teacher", lambda *a, **k: FakeTeacher(tok, cfg))
    monkeypatch.setattr(dpo.RewardScorer, "load", classmethod(lambda cls, *a, **k: scorer(scorer_parts)))
    prefs, info = build_preferences(ps, cfg, "base", "reward")
    assert len(prefs) == 1 and info["skipped"]["prompt_too_long"] == 1


class FakeClient:
    def __init__(self, replies: list[str]) -> None:
        self.replies = replies

    def chat(self, messages: list[dict[str, str]], temperature: float = 0.7) -> str:
        return self.replies.pop(0)


def test_sft_examples_cut_long_endpoint_reasoning_and_count_rejections(monkeypatch):
    cfg = load_config("tiny", overrides={"teacher": {"rationale_source": "endpoint", "endpoint_samples": 5,
                                                     "endpoint_base_url": "http://127.0.0.1:9", "endpoint_model": "m"}})
    tok = smollm2_tokenizer()
    p = next(x for x in pairs(10) if x.label == "Exact")
    replies = ["Reasoning: fine\nLabel: Maybe", "no format at all", "Reasoning: \x00\nLabel: Exact",
               "Reasoning: fine\nLabel: Partial",
               "Reasoning: " + "the item meets every need of the query \ud800 " * 200 + "\nLabel: Exact"]
    monkeypatch.setattr(EndpointClient, "from_config", classmethod(lambda cls, c: FakeClient(replies)))
    prompter = PromptBuilder(tok, THREE_CLASS, ["title"], cfg.teacher.max_prompt_tokens, 100)
    examples, info = sft.sft_examples([p], prompter, cfg)
    assert info["rejected_answers"] == {"unknown_label": 1, "no_label_line": 1, "empty_reasoning": 1,
                                        "wrong_label": 1}
    assert info["accepted"] == 1 and info["completions_truncated"] == 1
    completion = examples[0]["completion"]
    assert completion.startswith("Reasoning: the item meets") and completion.endswith("\nLabel: Exact")
    assert len(tok(completion, add_special_tokens=False)["input_ids"]) <= cfg.teacher.max_new_tokens


def test_the_bf16_autocast_setting_is_what_trl_gets(tmp_path):
    for setting, expected in (("no", False), ("bf16", True)):
        t = load_config("tiny", overrides={"teacher": {"mixed_precision": setting}}).teacher
        assert use_bf16(t) is expected and trl_args(t.sft, t, tmp_path)["bf16"] is expected


def test_an_empty_reasoning_line_does_not_take_the_label_line():
    parsed = parse_answer("Reasoning:\nLabel: Exact", THREE_CLASS)
    assert parsed.reasoning == "" and parsed.label == "Exact"
    assert parse_error_code(parse_answer("Label: Maybe", THREE_CLASS).error or "") == "unknown_label"


def test_sft_leaves_out_an_example_whose_prompt_cannot_fit_and_counts_it():
    cfg = load_config("tiny")
    tok = smollm2_tokenizer()
    ps = pairs(3)
    ps[1] = Pair(ps[1].query_id, "blue shoe " * 300, ps[1].item_id, title=ps[1].title, label=ps[1].label)
    prompter = PromptBuilder(tok, THREE_CLASS, ["title"], cfg.teacher.max_prompt_tokens, 100)
    examples, info = sft.sft_examples(ps, prompter, cfg)
    assert len(examples) == 2 and info["prompts_too_long"] == 1
    assert all(e["completion"].split("\n")[-1].startswith("Label: ") for e in examples)
