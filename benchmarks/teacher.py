"""ESCI teacher table: zero-shot SmolLM2 → +DAPT → +SFT → +DPO (demo profile, CPU-sized).

Seed labels come from the training queries of the query-grouped ESCI split; every stage is evaluated on
the same subsample of held-out-query pairs.  Prints a Markdown table and writes ``OUT/results.json``,
``OUT/report.md``; the final DPO teacher is written to ``--final`` (default ``OUT/dpo``).

    nice -n 5 .venv/bin/python benchmarks/teacher.py --out /work/artifacts/esci-teacher-bench \\
        --final /work/artifacts/esci-teacher

Sizes are flags (defaults fit a shared 2-core CPU in under an hour): seed pairs, evaluation pairs,
samples per prompt, answer length, DAPT steps.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from pathlib import Path
from typing import Any

from distillery.config import REWARD_DIMENSIONS, load_config
from distillery.data import load_pairs
from distillery.teacher.dapt import run_dapt
from distillery.teacher.dpo import run_dpo
from distillery.teacher.evaluation import evaluate_teacher
from distillery.teacher.inference import load_teacher
from distillery.teacher.reward import RewardScorer
from distillery.teacher.reward_step import run_reward
from distillery.teacher.sft import run_sft
from distillery.teacher.trainers import seed_pairs

ESCI = "esci:/work/shared/data/esci-us/esci_us_dev.tsv.gz"


def overrides(a: argparse.Namespace) -> dict[str, Any]:
    model = {"model": "smollm2"} if a.profile == "demo" else {}
    return {"teacher": {
        **model, "item_fields": ["title", "brand", "color"], "max_field_chars": 120,
        "max_prompt_tokens": 160, "max_new_tokens": a.max_new_tokens, "batch_size": a.batch_size,
        "max_seed_pairs": a.seed_pairs, "samples_per_prompt": a.samples, "dapt_block_size": 128,
        "dapt_max_texts": a.dapt_texts, "dapt": {"max_steps": a.dapt_steps, "batch_size": 4, "lr": 2e-4},
        "sft": {"epochs": a.sft_epochs, "batch_size": 8, "lr": a.sft_lr},
        "reward": {"epochs": a.reward_epochs, "batch_size": 16, "lr": 5e-5},
        "dpo": {"epochs": 1, "batch_size": 4, "lr": a.dpo_lr}, "threads": a.threads,
        "dpo_min_margin": a.min_margin,
        **({"reward": {"epochs": 1, "batch_size": 8, "lr": 1e-3}} if a.profile == "tiny" else {}),
    }}


def row(name: str, m: dict[str, Any], train_s: float | None) -> str:
    rc = m["reward_checks"]
    cells = [name, f"{m['macro_f1']:.3f}", f"{m['macro_f1_label_probs']:.3f}", f"{m['parse_failure_rate']:.1%}",
             *[f"{rc[d]:.2f}" for d in REWARD_DIMENSIONS],
             f"{m.get('reward_model_preference', float('nan')):.2f}",
             "–" if train_s is None else f"{train_s:.0f}", f"{m['seconds']:.0f}",
             f"{m['generated_tokens_per_s']:.1f}"]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=ESCI)
    ap.add_argument("--out", default="/work/artifacts/esci-teacher-bench")
    ap.add_argument("--final", default="", help="where to copy the DPO teacher (default OUT/dpo only)")
    ap.add_argument("--seed-pairs", type=int, default=96)
    ap.add_argument("--eval-pairs", type=int, default=48)
    ap.add_argument("--pref-prompts", type=int, default=32,
                    help="seed prompts sampled for the reward model, and as many others for DPO")
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=40)
    ap.add_argument("--dapt-texts", type=int, default=400)
    ap.add_argument("--dapt-steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=16, help="prompts per generation batch")
    ap.add_argument("--sft-lr", type=float, default=3e-4)
    ap.add_argument("--sft-epochs", type=int, default=1)
    ap.add_argument("--reward-epochs", type=int, default=10)
    ap.add_argument("--min-margin", type=float, default=0.0, help="teacher.dpo_min_margin")
    ap.add_argument("--resume", action="store_true", help="keep stages already in OUT/results.json")
    ap.add_argument("--reeval", action="store_true",
                    help="re-evaluate the four trained stages in OUT with these flags (implies --resume)")
    ap.add_argument("--dpo-lr", type=float, default=1e-4)
    ap.add_argument("--profile", choices=("demo", "tiny"), default="demo", help="tiny: a smoke run of the script")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(a.profile, overrides=overrides(a))
    pairs = load_pairs(a.data)
    seed, splits = seed_pairs(pairs, cfg)
    test = random.Random(0).sample(splits.test, min(a.eval_pairs, len(splits.test)))
    results: dict[str, Any] = {"sizes": {"seed_pairs": len(seed), "eval_pairs": len(test), **vars(a)},
                               "config": cfg.to_dict()["teacher"], "stages": {}}
    if (a.resume or a.reeval) and (out / "results.json").exists():
        results["stages"] = json.loads((out / "results.json").read_text(encoding="utf-8"))["stages"]

    def record(stage: str, model: str, train: dict[str, Any] | None, reward: RewardScorer | None) -> None:
        t0 = time.perf_counter()
        m = evaluate_teacher(load_teacher(model, cfg), test, reward)
        m["eval_wall_s"] = round(time.perf_counter() - t0, 1)
        results["stages"][stage] = {"eval": m, "train": train}
        (out / "results.json").write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
        print(f"[{stage}] macro-F1 {m['macro_f1']:.3f}, parse failures {m['parse_failure_rate']:.1%}", flush=True)

    done = results["stages"]
    if a.reeval:  # evaluate the trained stages again under today's flags (e.g. a longer answer budget)
        scorer = RewardScorer.load(out / "reward", list(cfg.teacher.reward_weights))
        for stage, model in (("zero-shot", "smollm2"), ("+DAPT", str(out / "dapt")), ("+SFT", str(out / "sft")),
                             ("+DPO", str(out / "dpo"))):
            record(stage, model, done[stage]["train"], scorer)
        done = results["stages"]
    if "zero-shot" not in done:
        record("zero-shot", "smollm2", None, None)
    if "+DAPT" not in done:
        record("+DAPT", str(out / "dapt"), run_dapt(pairs, cfg, out / "dapt"), None)
    if "+SFT" not in done:
        record("+SFT", str(out / "sft"), run_sft(seed, cfg, out / "sft", base=str(out / "dapt")), None)
    if "+DPO" not in done:
        k = a.pref_prompts
        reward = run_reward(seed[:k], cfg, out / "reward", base=str(out / "sft"))
        dpo = run_dpo(seed[k:2 * k], cfg, out / "dpo", base=str(out / "sft"), reward_dir=str(out / "reward"))
        scorer = RewardScorer.load(out / "reward", list(cfg.teacher.reward_weights))
        dpo_total = dpo["seconds"] + dpo["sampling_seconds"] + reward["seconds"] + reward["sampling_seconds"]
        record("+DPO", str(out / "dpo"), {**dpo, "reward_model": reward, "total_seconds": dpo_total}, scorer)
    if a.final:
        shutil.rmtree(a.final, ignore_errors=True)
        shutil.copytree(out / "dpo", a.final)
    head = ("| stage | macro-F1 (parsed) | macro-F1 (label_probs) | parse failures | "
            + " | ".join(REWARD_DIMENSIONS) + " | RM preference | train s | eval s | gen tok/s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for stage, r in results["stages"].items():
        train_s = None if r["train"] is None else float(r["train"].get("total_seconds", r["train"]["seconds"]))
        lines.append(row(stage, r["eval"], train_s))
    table = "\n".join(lines)
    (out / "report.md").write_text(table + "\n", encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
