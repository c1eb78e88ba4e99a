"""Preference optimisation: rank sampled answers with the reward model and train with TRL's ``DPOTrainer``.

For each seed prompt the SFT teacher samples ``teacher.samples_per_prompt`` answers; the reward model's
weighted score ranks them, after whether the answer parses at all; the best and the worst form a
chosen/rejected pair unless their gap is below ``teacher.dpo_min_margin`` (a tie: skipped).  Training adds
fresh LoRA adapters to the SFT teacher, so the reference model is the same network with the adapters
disabled; the adapters are merged for export.

CPU command (tiny profile)::

    distillery teacher dpo --data synthetic:300 --base /tmp/t/sft --reward /tmp/t/reward --out /tmp/t/dpo --profile tiny
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np

from distillery.config import Config
from distillery.data.schema import Pair
from distillery.teacher.inference import load_teacher
from distillery.teacher.model import save_teacher
from distillery.teacher.reward import RewardScorer
from distillery.teacher.trainers import Timer, losses, remove_empty, trl_args


def preference_pairs(prompts: list[str], answers: list[list[str]], scores: list[np.ndarray], min_margin: float,
                     parses: list[list[bool]] | None = None) -> list[dict[str, Any]]:
    """Chosen = best, rejected = worst answer per prompt; ties (gap < ``min_margin``) and identical texts skipped.

    ``parses`` (per answer: the fixed answer format parsed) ranks before the score: an answer that parses is
    always preferred to one that does not, so DPO never teaches the teacher to drop its ``Label:`` line
    (the learned format head alone let DPO raise the parse-failure rate on ESCI).
    Deterministic: equal keys keep the sampling order (a stable sort), so the same inputs give the same pairs.
    """
    out = []
    for j, (prompt, texts, sc) in enumerate(zip(prompts, answers, scores, strict=True)):
        ok = parses[j] if parses is not None else [True] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: (not ok[i], -float(sc[i]), i))
        best, worst = order[0], order[-1]
        tie = ok[best] == ok[worst] and float(sc[best] - sc[worst]) < min_margin
        if tie or texts[best].strip() == texts[worst].strip():
            continue
        out.append({"prompt": prompt, "chosen": texts[best], "rejected": texts[worst],
                    "score_chosen": float(sc[best]), "score_rejected": float(sc[worst])})
    return out


def build_preferences(pairs: list[Pair], cfg: Config, base: str, reward_dir: str) -> tuple[list[dict[str, Any]],
                                                                                          dict[str, Any]]:
    """Sample from the SFT teacher ``base`` and rank with the reward model in ``reward_dir``."""
    t = cfg.teacher
    teacher = load_teacher(base, cfg)
    scorer = RewardScorer.load(reward_dir, list(t.reward_weights))
    with Timer() as timer:
        sampled = teacher.sample(pairs, t.samples_per_prompt, t.sample_temperature, t.seed + 1, progress=True)
    texts = [[a.raw for a in s] for s in sampled]
    flat_pairs = [p for p, s in zip(pairs, texts, strict=True) for _ in s]
    flat_scores = scorer.preference(scorer.score(flat_pairs, [a for s in texts for a in s]))
    k = t.samples_per_prompt
    scores = [flat_scores[i * k:(i + 1) * k] for i in range(len(pairs))]
    parses = [[a.parse_error is None for a in answers] for answers in sampled]
    prefs = preference_pairs(teacher.prompter.build(pairs), texts, scores, t.dpo_min_margin, parses)
    info = {"prompts": len(pairs), "samples_per_prompt": k, "pairs": len(prefs),
            "ties_skipped": len(pairs) - len(prefs), "sampling_seconds": round(timer.seconds, 1)}
    return prefs, info


def run_dpo(pairs: list[Pair], cfg: Config, out: str | Path, base: str, reward_dir: str) -> dict[str, Any]:
    """DPO of the SFT teacher ``base`` on preference pairs ranked by the reward model; save to ``out``."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    out = Path(out)
    t = cfg.teacher
    prefs, info = build_preferences(pairs, cfg, base, reward_dir)
    if not prefs:
        raise ValueError("every sampled answer set was a tie under the reward model: no DPO pair to train on")
    teacher = load_teacher(base, cfg, training=True)  # fresh float32 weights: sampling ran in inference mode
    tok, model, meta = teacher.tokenizer, teacher.model, teacher.meta
    peft_config = LoraConfig(r=t.lora_r, lora_alpha=t.lora_alpha, lora_dropout=t.lora_dropout, task_type="CAUSAL_LM",
                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                             "down_proj"]) if t.lora else None
    ref = None if t.lora else copy.deepcopy(model)
    args = DPOConfig(**trl_args(t.dpo, t, out), beta=t.dpo_beta,
                     max_length=meta.max_prompt_tokens + t.max_new_tokens + 8)
    data = Dataset.from_list([{k: v for k, v in p.items() if k in ("prompt", "chosen", "rejected")} for p in prefs])
    tok.padding_side = "right"
    trainer = DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=data, processing_class=tok,
                         peft_config=peft_config)
    with Timer() as timer:
        trainer.train()
    tok.padding_side = "left"
    remove_empty(out / "trainer")
    curve = losses(trainer.state.log_history)
    summary = {"step": "dpo", **info, "seconds": round(timer.seconds, 1), "loss_first": curve[0] if curve else None,
               "loss_last": curve[-1] if curve else None, "base": base, "reward": reward_dir}
    meta.steps.append(dict(summary))
    save_teacher(trainer.model, tok, meta, out)
    (out / "dpo_summary.json").write_text(json.dumps({**summary, "losses": curve}, indent=2), encoding="utf-8")
    (out / "preferences.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prefs), encoding="utf-8")
    return summary
