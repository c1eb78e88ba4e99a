"""SFT on reasoning: teach the teacher to write a grounded rationale and a label for the seed pairs.

Targets come from the offline rationale writer (default) or an OpenAI-compatible endpoint with rejection
sampling; training is TRL's ``SFTTrainer`` on prompt–completion examples, so the loss covers the answer
only (the prompt tokens are masked).  LoRA by default, merged into the exported weights.

CPU command (tiny profile, seconds)::

    distillery teacher sft --data synthetic:300 --out /tmp/t/sft --profile tiny
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distillery import hardware
from distillery.config import Config
from distillery.data.schema import Pair
from distillery.teacher.endpoint import EndpointClient, endpoint_answers
from distillery.teacher.model import add_lora, load_for_step, save_teacher, weights_info
from distillery.teacher.prompt import PROMPT_SLACK, PromptBuilder, fit_answer
from distillery.teacher.rationale import gold_answer
from distillery.teacher.trainers import Timer, batch_layout, losses, remove_empty, trained_model, trl_args


def sft_examples(pairs: list[Pair], prompter: PromptBuilder, cfg: Config) -> tuple[list[dict[str, str]],
                                                                                   dict[str, Any]]:
    """Prompt–completion examples for the labelled ``pairs`` and how the reasoning was obtained."""
    label_set = prompter.label_set
    info: dict[str, Any] = {"source": cfg.teacher.rationale_source}
    if cfg.teacher.rationale_source == "endpoint":
        client = EndpointClient.from_config(cfg.teacher)
        answers, stats = endpoint_answers(pairs, label_set, client, cfg.teacher.endpoint_samples,
                                          prompter.item_fields, prompter.max_field_chars)
        info.update(asked=stats.asked, accepted=stats.accepted, rejected=len(stats.rejected_pairs),
                    rejected_answers=dict(stats.reasons))
        kept = [(p, a) for p, a in zip(pairs, answers, strict=True) if a is not None]
    else:
        kept = [(p, gold_answer(p, label_set)) for p in pairs]
    if not kept:
        raise ValueError("no SFT example left (every endpoint answer was rejected: "
                         f"{info.get('rejected_answers', {})})")
    # A completion longer than the answer budget is cut here, its label line kept: SFTTrainer's own
    # truncation (max_length) would cut the end, and the teacher would learn answers without a label.
    budget = cfg.teacher.max_new_tokens
    fitted = [fit_answer(prompter.tokenizer, a, budget) for _, a in kept]
    info["completions_truncated"] = sum(cut for _, cut in fitted)
    prompts = prompter.build([p for p, _ in kept])
    # Only the item is cut to fit max_prompt_tokens: a prompt still over it (a very long query) would leave
    # its completion no room under the trainer's max_length, so the example is left out, and counted.
    lengths = [len(ids) for ids in prompter.tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    fits = [n <= prompter.max_prompt_tokens + PROMPT_SLACK for n in lengths]
    info["prompts_too_long"] = fits.count(False)
    if not any(fits):
        raise ValueError(f"no SFT example left: every prompt exceeds teacher.max_prompt_tokens="
                         f"{prompter.max_prompt_tokens} (the queries alone are too long)")
    return [{"prompt": pr, "completion": a} for pr, (a, _), ok in zip(prompts, fitted, fits, strict=True) if ok], info


def run_sft(pairs: list[Pair], cfg: Config, out: str | Path, base: str | None = None) -> dict[str, Any]:
    """Fine-tune ``base`` (a teacher directory, else ``teacher.model``) on reasoning for ``pairs``; save to ``out``.

    Under torchrun every process builds the same examples and trains on its share of each batch; rank 0 saves."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    out = Path(out)
    tok, model, meta = load_for_step(base, cfg)
    prompter = PromptBuilder.from_meta(tok, meta)
    examples, info = sft_examples(pairs, prompter, cfg)
    model = add_lora(model, cfg.teacher)
    args = SFTConfig(**trl_args(cfg.teacher.sft, cfg.teacher, out), completion_only_loss=True,
                     max_length=meta.max_prompt_tokens + cfg.teacher.max_new_tokens + 8, packing=False)
    tok.padding_side = "right"  # TRL pads on the right for training; inference sets it back to left
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(examples), processing_class=tok)
    with Timer() as t:
        trainer.train()
    tok.padding_side = "left"
    curve = losses(trainer.state.log_history)
    summary = {"step": "sft", "examples": len(examples), "rationales": info, "seconds": round(t.seconds, 1),
               "loss_first": curve[0] if curve else None, "loss_last": curve[-1] if curve else None,
               "losses": curve, "sample": examples[0]["completion"], "base": base or cfg.teacher.model,
               "bf16_autocast": bool(args.bf16), **weights_info(model), **batch_layout(args),
               "hardware": hardware.cpu().line()}
    final = trained_model(trainer, base, cfg)
    if final is None:  # not rank 0
        return summary
    remove_empty(out / "trainer")
    meta.steps.append({k: v for k, v in summary.items() if k != "losses"})
    save_teacher(final, tok, meta, out)
    (out / "sft_summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary

