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
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distillery import hardware
from distillery.config import Config
from distillery.data.schema import Pair
from distillery.teacher import distributed
from distillery.teacher.inference import load_teacher
from distillery.teacher.model import load_for_step, save_teacher, weights_info
from distillery.teacher.prompt import PROMPT_SLACK, clean_text, fit_answer
from distillery.teacher.reward import RewardScorer
from distillery.teacher.trainers import Timer, batch_layout, losses, remove_empty, trained_model, trl_args

SKIP_REASONS = ("tie", "identical", "empty_chosen", "prompt_too_long", "no_answers")
"""Why a prompt gave no preference pair (counted in the DPO summary's ``skipped``)."""


def preference_pairs(prompts: list[str], answers: list[list[str]], scores: list[np.ndarray], min_margin: float,
                     parses: list[list[bool]] | None = None, skipped: Counter[str] | None = None
                     ) -> list[dict[str, Any]]:
    """Chosen = best, rejected = worst answer per prompt; ties (gap < ``min_margin``) and identical texts skipped.

    A prompt is also skipped when its best answer is empty (nothing to prefer) or it has no answer at all;
    ``skipped`` (when given) counts every skipped prompt under its reason (:data:`SKIP_REASONS`).

    ``parses`` (per answer: the fixed answer format parsed) ranks before the score: an answer that parses is
    always preferred to one that does not, so DPO never teaches the teacher to drop its ``Label:`` line
    (the learned format head alone let DPO raise the parse-failure rate on ESCI).
    Deterministic: equal keys keep the sampling order (a stable sort), so the same inputs give the same pairs.
    """
    out = []
    skipped = Counter() if skipped is None else skipped
    for j, (prompt, texts, sc) in enumerate(zip(prompts, answers, scores, strict=True)):
        if not texts:
            skipped["no_answers"] += 1
            continue
        ok = parses[j] if parses is not None else [True] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: (not ok[i], -float(sc[i]), i))
        best, worst = order[0], order[-1]
        tie = ok[best] == ok[worst] and float(sc[best] - sc[worst]) < min_margin
        reason = ("empty_chosen" if not texts[best].strip() else "identical"
                  if texts[best].strip() == texts[worst].strip() else "tie" if tie else None)
        if reason:
            skipped[reason] += 1
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
    # Completions within the answer budget, label line kept (TRL's own truncation keeps the start of
    # prompt + completion and would cut the label line off); scored as they will be trained on.
    truncated = 0
    texts: list[list[str]] = []
    for answers in sampled:
        texts.append([])
        for a in answers:
            text, cut = fit_answer(teacher.tokenizer, clean_text(a.raw), t.max_new_tokens)
            texts[-1].append(text)
            truncated += cut
    flat_pairs = [p for p, s in zip(pairs, texts, strict=True) for _ in s]
    flat_scores = scorer.preference(scorer.score(flat_pairs, [a for s in texts for a in s]))
    k = t.samples_per_prompt
    scores = [flat_scores[i * k:(i + 1) * k] for i in range(len(pairs))]
    # Every answer has a label now (read at the label position); a well-formed one also writes that label itself.
    parses = [[a.parse_error is None and a.agrees for a in answers] for answers in sampled]
    skipped: Counter[str] = Counter()
    prompts = teacher.prompter.build(pairs)
    # A prompt over its budget (a very long query: only the item is cut) would leave the completion no room.
    fits = [bool(s) and s[0].prompt_tokens <= teacher.meta.max_prompt_tokens + PROMPT_SLACK for s in sampled]
    skipped["prompt_too_long"] = sum(bool(s) and not f for s, f in zip(sampled, fits, strict=True))
    keep = [j for j, f in enumerate(fits) if f or not sampled[j]]
    prefs = preference_pairs([prompts[j] for j in keep], [texts[j] for j in keep], [scores[j] for j in keep],
                             t.dpo_min_margin, [parses[j] for j in keep], skipped)
    info = {"prompts": len(pairs), "samples_per_prompt": k, "pairs": len(prefs),
            "ties_skipped": skipped["tie"], "skipped": {r: skipped[r] for r in SKIP_REASONS},
            "completions_truncated": truncated, "reward_inputs_truncated": dict(scorer.truncated),
            "sampling_seconds": round(timer.seconds, 1)}
    return prefs, info


def run_dpo(pairs: list[Pair], cfg: Config, out: str | Path, base: str, reward_dir: str) -> dict[str, Any]:
    """DPO of the SFT teacher ``base`` on preference pairs ranked by the reward model; save to ``out``."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    out = Path(out)
    t = cfg.teacher
    prefs, info = build_preferences(pairs, cfg, base, reward_dir)
    # fresh weights in the training dtype (sampling ran in the inference dtype), 4-bit under QLoRA
    tok, model, meta = load_for_step(base, cfg)
    if torch.cuda.is_available() and t.quantize == "none":
        model.to(distributed.device())  # type: ignore[arg-type]
    info.update(weights_info(model))
    if not prefs:
        # What the teacher sampled decides this, not the user: pass the SFT teacher on, untouched, and say why.
        reasons = ", ".join(f"{n} {r}" for r, n in info["skipped"].items() if n)
        summary = {"step": "dpo", **info, "trained": False, "seconds": 0.0, "loss_first": None, "loss_last": None,
                   "not_trained_because": f"no preference pair among {len(pairs)} prompts (skipped: {reasons})",
                   "base": base, "reward": reward_dir, "bf16_autocast": False, "hardware": hardware.cpu().line()}
        if distributed.is_main():
            meta.steps.append(dict(summary))
            save_teacher(model, tok, meta, out)
            (out / "dpo_summary.json").write_text(json.dumps({**summary, "losses": []}, indent=2), encoding="utf-8")
            (out / "preferences.jsonl").write_text("", encoding="utf-8")
        return summary
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
    curve = losses(trainer.state.log_history)
    summary = {"step": "dpo", **info, "trained": True, "seconds": round(timer.seconds, 1),
               "loss_first": curve[0] if curve else None, "loss_last": curve[-1] if curve else None,
               "base": base, "reward": reward_dir, "bf16_autocast": bool(args.bf16), **batch_layout(args),
               "hardware": hardware.cpu().line()}
    final = trained_model(trainer, base, cfg)
    if final is None:  # not rank 0
        return summary
    remove_empty(out / "trainer")
    meta.steps.append(dict(summary))
    save_teacher(final, tok, meta, out)
    (out / "dpo_summary.json").write_text(json.dumps({**summary, "losses": curve}, indent=2), encoding="utf-8")
    (out / "preferences.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prefs), encoding="utf-8")
    return summary
