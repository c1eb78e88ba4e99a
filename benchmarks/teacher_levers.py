"""One teacher recipe, side by side with others: SFT on the demo split's seed pairs, then the teacher on validation
pairs (macro-F1, reasoning/label agreement, predicted classes, SFT seconds).  Validation, not test: these figures
choose the demo's recipe.  No DAPT or DPO: the rows differ only in what SFT sees and how it trains.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/teacher_levers.py --out /tmp/lev/F \\
        --set teacher.threads=1 --set teacher.max_seed_pairs=128 --set teacher.sft.epochs=2 \\
        --set teacher.sft.lr=2e-3 --set teacher.sft.batch_size=4      # row F of docs/benchmarks.md, session 7

Run two rows side by side (one torch thread each) to compare them on the same load.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from distillery.config import load_config, parse_overrides  # noqa: E402
from distillery.data.spec import load_pairs  # noqa: E402
from distillery.data.splits import split_pairs  # noqa: E402
from distillery.teacher.evaluation import evaluate_teacher  # noqa: E402
from distillery.teacher.protocol import open_teacher  # noqa: E402
from distillery.teacher.sft import run_sft  # noqa: E402
from distillery.teacher.trainers import seed_pairs  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="the SFT teacher's directory")
    ap.add_argument("--data", default="synthetic:3000")
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--val-pairs", type=int, default=96, help="the first N validation pairs score the teacher")
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    cfg = load_config(args.profile, overrides=parse_overrides(args.set))
    splits = split_pairs(load_pairs(args.data), cfg.data)
    start = time.perf_counter()
    summary = run_sft(seed_pairs(splits, cfg)[0], cfg, args.out)
    sft_s = time.perf_counter() - start
    m = evaluate_teacher(open_teacher(args.out, cfg), splits.val[:args.val_pairs])
    print(json.dumps({"set": args.set, "sft_s": round(sft_s), "examples": summary["examples"],
                      "loss_last": summary["loss_last"], "val_macro_f1": m["macro_f1"],
                      "agreement": m.get("label_agreement"), "predicted": m.get("predicted_distribution"),
                      "disagreements": m.get("disagreements")}))


if __name__ == "__main__":
    main()
