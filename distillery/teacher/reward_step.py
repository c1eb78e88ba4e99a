"""Train the multi-dimensional reward model on answers sampled from the SFT teacher; report each head."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from distillery import hardware
from distillery.config import Config
from distillery.data.schema import LabelSet, Pair, get_label_set
from distillery.teacher.checks import check_answer
from distillery.teacher.inference import load_teacher
from distillery.teacher.prompt import format_answer
from distillery.teacher.rationale import write_rationale
from distillery.teacher.reward import RewardModel, RewardScorer, agreement, build_encoder, fit_reward
from distillery.teacher.trainers import Timer


def reward_examples(pairs: list[Pair], sampled: list[list[str]], label_set: LabelSet
                    ) -> tuple[list[Pair], list[str]]:
    """Every sampled answer, plus per pair its gold rationale and a copy of it with a wrong label."""
    out_p: list[Pair] = []
    out_a: list[str] = []
    classes = label_set.classes
    for i, (p, answers) in enumerate(zip(pairs, sampled, strict=True)):
        gold = classes[label_set.index(p.label or "")]
        wrong = classes[(classes.index(gold) + 1 + i % (len(classes) - 1)) % len(classes)]
        extra = [format_answer(write_rationale(p, gold), gold), format_answer(write_rationale(p, gold), wrong)]
        for a in [*answers, *extra]:
            out_p.append(p)
            out_a.append(a)
    return out_p, out_a


def heldout_mask(pairs: list[Pair], fraction: float = 0.2) -> np.ndarray:
    """Held-out answers by query (no query on both sides), chosen by a hash of the query id."""
    def frac(q: str) -> float:
        return int(hashlib.sha1(f"reward:{q}".encode()).hexdigest()[:8], 16) / 16**8

    return np.array([frac(p.query_id) < fraction for p in pairs])


def run_reward(pairs: list[Pair], cfg: Config, out: str | Path, base: str) -> dict[str, Any]:
    """Sample answers from the SFT teacher ``base`` for ``pairs``, train the reward model, save it to ``out``."""
    t = cfg.teacher
    teacher = load_teacher(base, cfg)
    label_set = get_label_set(teacher.meta.label_set)
    with Timer() as sampling:
        sampled = teacher.sample(pairs, t.samples_per_prompt, t.sample_temperature, t.seed, progress=True)
    ex_pairs, answers = reward_examples(pairs, [[a.raw for a in s] for s in sampled], label_set)
    targets = np.array([[*check_answer(p, a, label_set).values()] for p, a in zip(ex_pairs, answers, strict=True)])
    held = heldout_mask(ex_pairs)
    if held.all() or not held.any():  # too few queries to hold some out: evaluate on the training answers
        held = np.zeros(len(ex_pairs), dtype=bool)
        held[::5] = True
    tok, encoder = build_encoder(t.reward_encoder, t.seed)
    scorer = RewardScorer(tok, RewardModel(encoder), t.reward_max_length, list(t.reward_weights))
    train = np.flatnonzero(~held)
    with Timer() as training:
        curve = fit_reward(scorer, [ex_pairs[i] for i in train], [answers[i] for i in train], targets[train], t)
    test = np.flatnonzero(held)
    pred = scorer.score([ex_pairs[i] for i in test], [answers[i] for i in test])
    summary = {"step": "reward", "answers": len(answers), "train_answers": len(train), "heldout_answers": len(test),
               "sampling_seconds": round(sampling.seconds, 1), "seconds": round(training.seconds, 1),
               "loss_first": curve[0], "loss_last": curve[-1], "heads": agreement(pred, targets[test]),
               "target_means": dict(zip(("label", "consistency", "grounding", "format", "concision"),
                                        targets.mean(0).round(3).tolist(), strict=True)),
               "base": base, "encoder": t.reward_encoder, "max_length": scorer.input_limit(),
               # inputs cut to max_length (answer: its reasoning's tail, the label line kept; context: the item's)
               "truncated": {"answer": scorer.truncated["answer"], "context": scorer.truncated["context"]},
               "bf16_autocast": False, "hardware": hardware.cpu().line()}
    scorer.save(out, {"label_set": label_set.name, "summary": summary})
    (Path(out) / "samples.jsonl").write_text("".join(
        json.dumps({"query": p.query, "title": p.title, "gold": p.label, "answer": a, "targets": tg.tolist()}) + "\n"
        for p, a, tg in zip(ex_pairs, answers, targets, strict=True)), encoding="utf-8")
    return summary
