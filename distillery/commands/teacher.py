"""``distillery teacher dapt|sft|reward|dpo|evaluate``: the teacher LLM's steps (thin adapters).

    distillery teacher dapt --data synthetic:300 --out /tmp/t/dapt --profile tiny
    distillery teacher sft --data synthetic:300 --base /tmp/t/dapt --out /tmp/t/sft --profile tiny
    distillery teacher reward --data synthetic:300 --base /tmp/t/sft --out /tmp/t/reward --profile tiny
    distillery teacher dpo --data synthetic:300 --base /tmp/t/sft --reward /tmp/t/reward --out /tmp/t/dpo --profile tiny
    distillery teacher evaluate --model /tmp/t/dpo --data synthetic:100 --out /tmp/t/eval.json --profile tiny
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from distillery.commands._common import (
    add_common,
    check_at_least,
    check_out_dir,
    check_out_file,
    check_reward_dir,
    check_teacher,
    config_from_args,
)


def _report(out: Path, title: str, summary: dict[str, Any]) -> None:
    """A readable ``report.md`` beside the step's outputs."""
    rows = "\n".join(f"| {k} | {json.dumps(v) if isinstance(v, (dict, list)) else v} |" for k, v in summary.items()
                     if k != "losses")
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(f"# {title}\n\n| field | value |\n|---|---|\n{rows}\n", encoding="utf-8")
    print(f"{title}: report {out / 'report.md'}")


def run_step(args: argparse.Namespace) -> int:
    from distillery.data.spec import load
    from distillery.teacher.trainers import seed_pairs

    check_out_dir(args.out)
    if args.base:
        check_teacher(args.base, "--base")
    if args.step == "dpo":
        if not args.reward:
            raise ValueError("teacher dpo: --reward (the reward model directory) is required")
        check_reward_dir(args.reward)
    cfg = config_from_args(args, {"teacher": {"seed": args.seed}})
    pairs, _ = load(args.data, synthetic_noise=cfg.data.synthetic_noise)
    out = Path(args.out)
    if args.step == "dapt":
        from distillery.teacher.dapt import run_dapt

        summary = run_dapt(pairs, cfg, out, base=args.base)
    else:
        seed, _ = seed_pairs(pairs, cfg)
        if args.step == "sft":
            from distillery.teacher.sft import run_sft

            summary = run_sft(seed, cfg, out, base=args.base)
        elif not args.base:
            raise ValueError(f"teacher {args.step}: --base (the SFT teacher directory) is required")
        elif args.step == "reward":
            from distillery.teacher.reward_step import run_reward

            summary = run_reward(seed, cfg, out, base=args.base)
        else:
            if not args.reward:
                raise ValueError("teacher dpo: --reward (the reward model directory) is required")
            from distillery.teacher.dpo import run_dpo

            summary = run_dpo(seed, cfg, out, base=args.base, reward_dir=args.reward)
    _report(out, f"teacher {args.step}", summary)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from distillery.data.spec import load
    from distillery.evaluate import write_json
    from distillery.teacher.evaluation import evaluate_teacher
    from distillery.teacher.inference import load_teacher
    from distillery.teacher.reward import RewardScorer

    check_teacher(args.model, "--model")
    check_at_least(args.max_pairs, 0, "--max-pairs")
    if args.reward:
        check_reward_dir(args.reward)
    check_out_file(args.out)
    cfg = config_from_args(args)
    pairs, _ = load(args.data, synthetic_noise=cfg.data.synthetic_noise)
    if args.max_pairs:
        pairs = pairs[: args.max_pairs]
    reward = RewardScorer.load(args.reward, list(cfg.teacher.reward_weights)) if args.reward else None
    metrics = evaluate_teacher(load_teacher(args.model, cfg), pairs, reward)
    metrics.update(model=str(args.model), data=args.data)
    write_json(metrics, args.out)
    print(f"macro-F1 {metrics['macro_f1']:.3f} (label_probs {metrics['macro_f1_label_probs']:.3f}), parse failures "
          f"{metrics['parse_failure_rate']:.1%}, {metrics['generated_tokens_per_s']} generated tokens/s")
    print(f"wrote {args.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("teacher", help="train and evaluate the teacher LLM (dapt, sft, reward, dpo, evaluate)")
    steps = p.add_subparsers(dest="step", required=True)
    helps = {"dapt": "domain-adaptive pre-training on platform text", "sft": "SFT on grounded reasoning",
             "reward": "train the multi-dimensional reward model", "dpo": "DPO on reward-ranked answer pairs"}
    for name, text in helps.items():
        s = steps.add_parser(name, help=text)
        add_common(s)
        s.add_argument("--data", required=True, help="data spec, e.g. esci:PATH or synthetic:300")
        s.add_argument("--out", required=True, help="output directory (a teacher or reward model directory)")
        s.add_argument("--base", help="teacher directory to start from (default: teacher.model)")
        s.add_argument("--seed", type=int, help="teacher.seed")
        if name == "dpo":
            s.add_argument("--reward", help="reward model directory written by `teacher reward`")
        s.set_defaults(handler=run_step)
    s = steps.add_parser("evaluate", help="macro-F1, parse failures, reward per dimension, tokens/s")
    add_common(s)
    s.add_argument("--model", required=True, help="teacher directory, 'smollm2', 'tiny' or a HF causal LM")
    s.add_argument("--data", required=True, help="data spec of labelled pairs")
    s.add_argument("--out", required=True, help="metrics JSON path")
    s.add_argument("--reward", help="reward model directory (adds its mean score per head)")
    s.add_argument("--max-pairs", type=int, default=0, help="evaluate the first N pairs only")
    s.set_defaults(handler=run_evaluate)
