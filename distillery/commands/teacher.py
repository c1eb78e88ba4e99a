"""``distillery teacher dapt|sft|reward|dpo|evaluate|serve``: arguments for :mod:`distillery.stages.teacher`.

    distillery teacher dapt --data synthetic:300 --out /tmp/t/dapt --profile tiny
    distillery teacher sft --data synthetic:300 --base /tmp/t/dapt --out /tmp/t/sft --profile tiny
    distillery teacher reward --data synthetic:300 --base /tmp/t/sft --out /tmp/t/reward --profile tiny
    distillery teacher dpo --data synthetic:300 --base /tmp/t/sft --reward /tmp/t/reward --out /tmp/t/dpo --profile tiny
    distillery teacher evaluate --model /tmp/t/dpo --data synthetic:100 --out /tmp/t/eval.json --profile tiny
    distillery teacher serve --model tiny --profile tiny --port 8000      # OpenAI-compatible API on loopback
"""

from __future__ import annotations

import argparse
from pathlib import Path

from distillery.commands._common import (
    add_common,
    check_at_least,
    check_out_dir,
    check_out_file,
    check_reward_dir,
    check_teacher,
    config_from_args,
)


def run_step(args: argparse.Namespace) -> int:
    from distillery.stages import teacher
    from distillery.stages.data import Dataset

    check_out_dir(args.out)
    if args.base:
        check_teacher(args.base, "--base")
    reward = getattr(args, "reward", None)
    if reward:
        check_reward_dir(reward)
    cfg = config_from_args(args, {"teacher": {"seed": args.seed}})
    data, _ = Dataset.from_spec(args.data, cfg)
    teacher.train(args.step, cfg, data, args.out, base=args.base, reward_dir=reward)
    print(f"teacher {args.step}: report {Path(args.out) / 'report.md'}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from distillery.stages import teacher

    check_teacher(args.model, "--model")
    check_at_least(args.max_pairs, 0, "--max-pairs")
    if args.reward:
        check_reward_dir(args.reward)
    check_out_file(args.out)
    metrics = teacher.evaluate_spec(config_from_args(args), args.model, args.data, args.out,
                                    max_pairs=args.max_pairs, reward_dir=args.reward)
    print(f"macro-F1 {metrics['macro_f1']:.3f}, parse failures {metrics['parse_failure_rate']:.1%}, reasoning/label "
          f"agreement {metrics['label_agreement']:.1%}, {metrics['generated_tokens_per_s']} generated tokens/s")
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
    _register_serve(steps)


def run_serve(args: argparse.Namespace) -> int:
    from distillery.teacher.serve import check_address, serve
    from distillery.teacher.serve_engine import ServedModel

    check_teacher(args.model, "--model")
    check_at_least(args.port, 0, "--port")
    check_at_least(args.max_logprobs, 0, "--max-logprobs")
    if args.port > 65535:
        raise ValueError(f"--port {args.port}: must be at most 65535")
    check_address(args.host, args.port)
    cfg = config_from_args(args)
    served = ServedModel.load(args.model, cfg, args.max_logprobs)
    serve(served, args.host, args.port, cfg.teacher.max_new_tokens, verbose=args.verbose)
    return 0


def _register_serve(steps: argparse._SubParsersAction) -> None:
    s = steps.add_parser("serve", help="serve a teacher through an OpenAI-compatible HTTP API (completions, chat)",
                         description="distillery teacher serve --model tiny|smollm2|DIR --host 127.0.0.1 --port N")
    add_common(s)
    s.add_argument("--model", required=True, help="teacher directory, 'smollm2', 'tiny' or a HF causal LM")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    s.add_argument("--port", type=int, default=8000, help="port (0: a free one, printed)")
    s.add_argument("--max-logprobs", type=int, default=20,
                   help="largest logprobs=K a request may ask (vLLM's default 20; 0: the whole vocabulary)")
    s.add_argument("--verbose", action="store_true", help="log every request")
    s.set_defaults(handler=run_serve)
