"""Every teacher step on the tiny profile: DAPT, SFT, reward model, DPO, evaluation and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from distillery.cli import main
from distillery.config import Config, load_config
from distillery.data import THREE_CLASS, Pair, load_pairs
from distillery.teacher.checks import check_answer
from distillery.teacher.dapt import run_dapt
from distillery.teacher.dpo import preference_pairs
from distillery.teacher.evaluation import macro_f1_with_failures
from distillery.teacher.model import load_base
from distillery.teacher.prompt import format_answer
from distillery.teacher.rationale import write_rationale
from distillery.teacher.reward import RewardModel, RewardScorer, build_encoder, fit_reward
from distillery.teacher.sft import run_sft
from distillery.teacher.trainers import seed_pairs

STEPS = {"max_new_tokens": 12, "max_seed_pairs": 6, "samples_per_prompt": 2,
         "sft": {"max_steps": 4, "lr": 1e-2, "batch_size": 3}, "dpo": {"max_steps": 2, "batch_size": 2},
         "reward": {"epochs": 1, "batch_size": 8}}


def tiny_cfg(**extra: object) -> Config:
    return load_config("tiny", overrides={"teacher": {**STEPS, **extra}})


def weights(path: str | Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return dict(AutoModelForCausalLM.from_pretrained(path).state_dict())


def changed(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> int:
    return sum(not torch.allclose(a[k], b[k]) for k in a if k in b)


@pytest.fixture(scope="module")
def sft_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = tiny_cfg()
    seed, _ = seed_pairs(load_pairs("synthetic:200"), cfg)
    out = tmp_path_factory.mktemp("teacher") / "sft"
    summary = run_sft(seed, cfg, out)
    assert summary["examples"] == 6 and len(summary["losses"]) == 4
    assert all(math.isfinite(x) for x in summary["losses"]) and summary["loss_last"] < summary["loss_first"]
    assert summary["bf16_autocast"] is False and summary["hardware"]  # the tiny profile: mixed_precision=no
    return out


def test_dapt_lowers_perplexity_on_a_repetitive_corpus(tmp_path: Path) -> None:
    cfg = load_config("tiny", overrides={"teacher": {"dapt_block_size": 32, "dapt": {"max_steps": 8, "lr": 1e-2}}})
    item = dict(title="Acme red kettle 1.7 l", brand="Acme", color="red", description="boils water fast. " * 3)
    pairs = [Pair(f"q{i}", "red kettle", f"i{i}", label="Exact", **item) for i in range(40)]
    summary = run_dapt(pairs, cfg, tmp_path / "dapt")
    assert summary["perplexity_after"] < summary["perplexity_before"]
    _, base, _ = load_base("tiny", cfg.teacher)
    assert changed(dict(base.state_dict()), weights(tmp_path / "dapt")) > 0  # merged LoRA moved the weights
    assert json.loads((tmp_path / "dapt" / "teacher.json").read_text())["steps"][0]["step"] == "dapt"


def test_sft_trains_lora_on_the_answer_only(sft_dir: Path) -> None:
    cfg = tiny_cfg()
    _, base, _ = load_base("tiny", cfg.teacher)
    assert changed(dict(base.state_dict()), weights(sft_dir)) > 0
    sample = json.loads((sft_dir / "sft_summary.json").read_text())["sample"]
    assert sample.startswith("Reasoning: ") and "\nLabel: " in sample


def test_reward_heads_rank_a_correct_grounded_answer_above_a_wrong_one() -> None:
    cfg = load_config("tiny", overrides={"teacher": {"reward": {"epochs": 15, "lr": 5e-3, "batch_size": 16}}})
    pairs = [p for p in load_pairs("synthetic:80") if p.label][:16]
    good = [format_answer(write_rationale(p, THREE_CLASS.classes[THREE_CLASS.index(p.label or "")]),
                          THREE_CLASS.classes[THREE_CLASS.index(p.label or "")]) for p in pairs]
    bad = ["Reasoning: made of moonlight and unicorn dust.\nLabel: "
           + THREE_CLASS.classes[(THREE_CLASS.index(p.label or "") + 1) % 3] for p in pairs]
    answers, toy_pairs = good + bad, pairs + pairs
    targets = np.array([[*check_answer(p, a, THREE_CLASS).values()] for p, a in zip(toy_pairs, answers, strict=True)])
    tok, enc = build_encoder("tiny", 0)
    scorer = RewardScorer(tok, RewardModel(enc), 96, list(cfg.teacher.reward_weights))
    curve = fit_reward(scorer, toy_pairs, answers, targets, cfg.teacher)
    assert all(math.isfinite(x) for x in curve) and np.mean(curve[-5:]) < np.mean(curve[:5])
    pref = scorer.preference(scorer.score(toy_pairs, answers))
    assert (pref[:16] > pref[16:]).mean() >= 0.9


def test_chosen_rejected_construction_is_deterministic() -> None:
    prompts = ["p1", "p2", "p3"]
    answers = [["a", "b", "c"], ["x", "y"], ["same", "same "]]
    scores = [np.array([0.2, 0.9, 0.2]), np.array([0.50, 0.52]), np.array([1.0, 0.0])]
    first = preference_pairs(prompts, answers, scores, min_margin=0.05)
    assert first == preference_pairs(prompts, answers, scores, min_margin=0.05)
    # p1: best b, worst = the later of the tied 0.2s; p2: a tie (gap < margin); p3: identical texts
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in first] == [("p1", "b", "c")]
    # an answer that parses beats any that does not, whatever the reward model says; a tie no longer
    parsed = preference_pairs(prompts, answers, scores, 0.05, [[True, False, True], [True, False], [True, True]])
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in parsed] == [("p1", "a", "b"), ("p2", "x", "y")]


def test_reward_dpo_and_evaluate_through_the_cli(sft_dir: Path, tmp_path: Path) -> None:
    sets = [f"--set=teacher.{k}={v}" for k, v in (("max_new_tokens", 12), ("max_seed_pairs", 6),
                                                    ("samples_per_prompt", 2), ("dpo.max_steps", 2),
                                                    ("dpo.batch_size", 2), ("reward.epochs", 1))]
    common = ["--data", "synthetic:200", "--profile", "tiny", *sets]
    assert main(["teacher", "reward", *common, "--base", str(sft_dir), "--out", str(tmp_path / "rw")]) == 0
    heads = json.loads((tmp_path / "rw" / "reward.json").read_text())["summary"]["heads"]
    assert set(heads) == {"label", "consistency", "grounding", "format", "concision"}
    assert main(["teacher", "dpo", *common, "--base", str(sft_dir), "--reward", str(tmp_path / "rw"),
                 "--out", str(tmp_path / "dpo")]) == 0
    summary = json.loads((tmp_path / "dpo" / "dpo_summary.json").read_text())
    assert summary["pairs"] > 0 and all(math.isfinite(x) for x in summary["losses"])
    assert changed(weights(sft_dir), weights(tmp_path / "dpo")) > 0
    out = tmp_path / "eval.json"
    assert main(["teacher", "evaluate", "--model", str(tmp_path / "dpo"), "--data", "synthetic:40", "--max-pairs",
                 "6", "--out", str(out), "--reward", str(tmp_path / "rw"), "--profile", "tiny",
                 "--set", "teacher.max_new_tokens=8"]) == 0
    m = json.loads(out.read_text())
    assert m["n"] == 6 and 0.0 <= m["parse_failure_rate"] <= 1.0 and set(m["reward_model"]) == set(heads)
    assert m["teacher"]["steps"] == ["sft", "dpo"]


def test_macro_f1_counts_parse_failures_as_misses() -> None:
    assert macro_f1_with_failures([0, 1, 2], [0, 1, 2], 3) == 1.0
    assert macro_f1_with_failures([0, 0, 1], [0, None, 1], 2) == pytest.approx((2 / 3 + 1.0) / 2)
