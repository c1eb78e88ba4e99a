"""One teacher recipe, side by side with others: SFT on the demo split's seed pairs, then the teacher on validation
pairs and on seed pairs SFT did not use (macro-F1, reasoning/label agreement, predicted classes, the share of the
pairs whose match line lacks nothing that it calls Exact, SFT seconds).  Validation and unused seed pairs, never
test: these figures choose the demo's recipe.  The unused seed pairs are other items of the queries SFT saw, and
what is left over depends on ``teacher.max_seed_pairs`` and ``teacher.seed``: they compare rows with the same
cap and seed; validation queries are unseen and the same for every row.  No DAPT or DPO: the rows differ only in
what SFT sees and how it trains.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/teacher_levers.py --out /tmp/lev8/N \
        --set teacher.threads=1            # the demo profile as it is: row N of docs/benchmarks.md, session 8
    ... --set teacher.max_seed_pairs=128 --set teacher.sft.epochs=2 \
        --set teacher.item_fields=title,brand,color,attributes,bullet_points,description   # row L

Run two rows side by side (one torch thread each) to compare them on the same load.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from distillery.config import load_config, parse_overrides  # noqa: E402
from distillery.data.schema import label_indices  # noqa: E402
from distillery.data.spec import load_pairs  # noqa: E402
from distillery.data.splits import split_pairs  # noqa: E402
from distillery.teacher.evaluation import macro_f1_with_failures  # noqa: E402
from distillery.teacher.matching import needs  # noqa: E402
from distillery.teacher.protocol import open_teacher  # noqa: E402
from distillery.teacher.sft import run_sft  # noqa: E402
from distillery.teacher.trainers import seed_pairs  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="the SFT teacher's directory (required unless --teacher)")
    ap.add_argument("--teacher", help="score this teacher directory (e.g. a pipeline's sft output) instead of "
                    "training one; the held pairs are those the same --set leaves unused")
    ap.add_argument("--data", default="synthetic:3000")
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--val-pairs", type=int, default=192, help="the first N validation pairs score the teacher")
    ap.add_argument("--held-pairs", type=int, default=96,
                    help="N labelled seed pairs SFT did not use (other items of its queries) score it too")
    ap.add_argument("--log-pairs", type=int, default=0,
                    help="N log pairs (a fixed random sample, scored against their hidden human labels): many "
                         "more queries than ESCI's validation split; the same sample as teacher_label_probe.py's "
                         "evalset=logs")
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    if not (args.out or args.teacher):
        ap.error("give --out (train a teacher there) or --teacher (score an existing one)")
    cfg = load_config(args.profile, overrides=parse_overrides(args.set))
    splits = split_pairs(load_pairs(args.data), cfg.data)
    seed = seed_pairs(splits, cfg)[0]
    used = {(p.query_id, p.item_id) for p in seed}
    unused = [p for p in splits.seed if p.label is not None and (p.query_id, p.item_id) not in used]
    held = random.Random(5).sample(unused, min(args.held_pairs, len(unused)))
    row: dict = {"set": args.set}
    if args.teacher:
        row["teacher"] = args.teacher
        trained = Path(args.teacher, "sft_summary.json")
        if trained.is_file() and (n := json.loads(trained.read_text()).get("examples")) != len(seed):
            print(f"warning: {args.teacher} trained on {n} SFT examples, these settings pick {len(seed)} seed pairs: "
                  "its 'held' pairs may include pairs it trained on", file=sys.stderr)
    else:
        start = time.perf_counter()
        summary = run_sft(seed, cfg, args.out)
        row.update(sft_s=round(time.perf_counter() - start), examples=summary["examples"],
                   loss_last=summary["loss_last"])
    teacher = open_teacher(args.teacher or args.out, cfg)
    logs = random.Random(0).sample(splits.logs, min(args.log_pairs, len(splits.logs))) if args.log_pairs else []
    for name, pairs in (("val", splits.val[:args.val_pairs]), ("held", held), ("logs", logs)):
        if not pairs:  # a cap that takes every seed pair leaves none unused
            continue
        answers = teacher.answer(pairs, progress=True)
        ls = teacher.label_set
        pred: list[int | None] = [None if a.label is None else ls.classes.index(a.label) for a in answers]
        # Pairs whose match line lacks no query word: Exact unless the label is noisy; the one case a teacher
        # that copies its evidence cannot get wrong.
        whole = [a for p, a in zip(pairs, answers, strict=True) if not needs(p)[1]]
        row[name] = {"n": len(pairs),
                     "macro_f1": macro_f1_with_failures(label_indices(pairs, ls, name), pred, ls.num_classes),
                     "agreement": sum(a.disagreement is None for a in answers) / len(answers),
                     "predicted": dict(Counter(a.label for a in answers)),
                     "exact_when_nothing_lacking": sum(a.label == "Exact" for a in whole) / max(1, len(whole))}
    print(json.dumps(row))


if __name__ == "__main__":
    main()
