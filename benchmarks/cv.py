"""Query-grouped k-fold cross-validation: choose settings on folds of the development queries, report test once.

The development queries are every query the ordinary split does not hold out for test; they are dealt into
``--folds`` folds (``distillery.data.splits.query_folds``).  For each fold a method trains on the other
development queries (seed / logs, early stopping on validation queries among them) and is scored on the fold's
held-out queries.  Seeds are averaged within a fold first; the table gives mean ± sd over the folds.  The real
test split is used only by ``--final``, once the settings are chosen.

Resumable: every finished run leaves ``runs/<method>-f<fold>-s<seed>/metrics.json`` and is skipped when the
script is run again; the table is rebuilt from whatever has finished.  Methods: ``lexical`` (the lexical floor),
``a`` ``e`` (human labels), ``b`` ``c`` ``d`` and ``teacher`` (need ``--annotations``, a merged file covering
every development pair, e.g. from ``benchmarks/distill.py`` with ``annotate.split=all``).

Tiny CPU check (random-init student, about a minute)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cv.py --data synthetic:600 --out /tmp/cvtest --folds 3 \\
        --methods lexical,a --profile tiny --set train.epochs=1

ESCI, five folds over the 75 development queries, two processes side by side, then the test split once::

    .venv/bin/python benchmarks/cv.py --data esci:../shared/data/esci-us/esci_us_dev.tsv.gz --out /tmp/cv-esci \\
        --folds 5 --seeds 1 --methods lexical,a,e,d,teacher --annotations /tmp/bench-esci/annotations.jsonl \\
        --set data.label_set=4class --workers 2 --worker 0        # and --worker 1
    .venv/bin/python benchmarks/cv.py ... --final d               # held-out test (reported once)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from distillery.annotation import load_annotations  # noqa: E402
from distillery.config import Config, load_config, parse_overrides  # noqa: E402
from distillery.data.schema import LabelSet, Pair, get_label_set  # noqa: E402
from distillery.data.spec import load  # noqa: E402
from distillery.data.splits import Fold, Splits, query_folds, split_pairs  # noqa: E402
from distillery.student.distill import run_distill, teacher_accuracy  # noqa: E402
from distillery.student.finetune import run_finetune  # noqa: E402

# name → (row label, training method: "lexical" for the lexical floor, a run_distill method, or "" for the teacher)
METHODS: dict[str, tuple[str, str]] = {
    "lexical": ("lexical floor (BM25 + overlap, LR)", "lexical"),
    "a": ("(a) human seed labels", "human"),
    "b": ("(b) teacher hard labels", "hard"),
    "c": ("(c) soft-label KD", "soft"),
    "d": ("(d) CRSD", "crsd"),
    "e": ("(e) human labels, all training pairs", "human-all"),
    "teacher": ("teacher (its annotations; the split's seed pairs left out)", ""),
}
NEEDS_ANNOTATIONS = ("b", "c", "d", "teacher")
DETERMINISTIC = ("lexical", "teacher")
"""Methods without a training seed: one run per fold."""
RUN_DIR = re.compile(r"^(?P<method>[a-z]+)-f(?P<fold>\d+)-s(?P<seed>\d+)$")


def parse_methods(text: str, annotations: str | None) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in names if m not in METHODS]
    if bad or not names:
        raise SystemExit(f"--methods {text!r}: unknown {bad}; choose from {', '.join(METHODS)}")
    if not annotations and (need := [m for m in names if m in NEEDS_ANNOTATIONS]):
        raise SystemExit(f"--methods {','.join(need)} need --annotations (a merged annotations.jsonl)")
    return names


def check_coverage(splits: Splits, ann: dict[Any, Any], path: str, where: str) -> None:
    """A distillation run must find every seed and log pair annotated, or it would quietly learn from fewer."""
    needed = splits.seed + splits.logs
    missing = [f"{p.query_id}/{p.item_id}" for p in needed if (p.query_id, p.item_id) not in ann]
    if missing:
        raise SystemExit(f"--annotations {path}: {len(missing)} of the {len(needed)} seed and log pairs of {where} "
                         f"are not annotated (first: {', '.join(missing[:3])}); annotate every development pair "
                         "(annotate.split=all)")


def teacher_metrics(pairs: list[Pair], ann: dict[Any, Any], ls: LabelSet) -> dict[str, Any]:
    """The teacher's own labels on ``pairs`` scored like the students (``teacher_accuracy``: an unparsed or unknown
    label counts as wrong); a pair it never annotated is left out and counted."""
    got = [(p, ann[(p.query_id, p.item_id)]) for p in pairs if (p.query_id, p.item_id) in ann]
    m = teacher_accuracy([p for p, _ in got], ann, ls)
    if m is None:
        return {"n": 0, "missing": len(pairs), "parse_failures": 0}
    return {"macro_f1": m["macro_f1"], "accuracy": m["accuracy"], "n": m["n"], "missing": len(pairs) - len(got),
            "parse_failures": sum(1 for _, a in got if a.get("parse_error") or not ls.knows(str(a.get("label"))))}


def train(method: str, splits: Splits, ann: dict[Any, Any], cfg: Config, run_dir: Path, data: str) -> dict[str, Any]:
    label, how = METHODS[method]
    if how == "lexical":
        return run_finetune(splits, cfg, run_dir, method="lexical", data_name=data)
    return run_distill(splits, ann, cfg, run_dir, method=how, data_name=data, variant=label)


def run_one(args: argparse.Namespace, method: str, seed: int, splits: Splits, ann: dict[Any, Any],
            run_dir: Path, tag: str, where: str) -> None:
    """One (method, split, seed) run, skipped when its metrics.json exists; prints a line as it starts and ends."""
    if (run_dir / "metrics.json").exists():
        return
    if method == "teacher":
        # The annotating teacher was trained on (some of) the ordinary split's seed pairs, which are development
        # pairs: scoring it on them would flatter it.
        trained = {(p.query_id, p.item_id) for p in split_pairs(args.pairs, args.cfg.data).seed}
        held = [p for p in splits.test if (p.query_id, p.item_id) not in trained]
        m = teacher_metrics(held, ann, get_label_set(args.cfg.data.label_set))
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.json").write_text(json.dumps({"test": m, "wall_seconds": 0.0}, indent=1))
        print(f"{tag} teacher: macro-F1 {m.get('macro_f1', float('nan')):.4f} (n={m['n']}, missing {m['missing']}, "
              f"parse failures {m['parse_failures']})", flush=True)
        return
    if method in NEEDS_ANNOTATIONS:
        check_coverage(splits, ann, args.annotations, where)
    ov = json.loads(json.dumps(args.cfg_over))
    ov.setdefault("train", {})["seed"] = seed
    cfg = load_config(args.profile, overrides=ov)
    print(f"{tag} {METHODS[method][0]} seed {seed} …", flush=True)
    t0 = time.perf_counter()
    s = train(method, splits, ann, cfg, run_dir, args.data)
    print(f"{tag} {METHODS[method][0]} seed {seed}: macro-F1 {s['test']['macro_f1']:.4f} · "
          f"{time.perf_counter() - t0:.0f} s", flush=True)


def run_folds(args: argparse.Namespace, folds: list[Fold], ann: dict[Any, Any], out: Path) -> None:
    # Every fold of seed 0 first: a budget cut short still leaves whole seeds across the folds.
    plan = [(m, f, s) for s in range(args.seeds) for f in folds for m in args.methods
            if not (m in DETERMINISTIC and s > 0)]
    for i, (method, fold, seed) in enumerate(plan):
        if i % args.workers == args.worker:
            run_one(args, method, seed, fold.splits, ann, out / "runs" / f"{method}-f{fold.index}-s{seed}",
                    f"[{i + 1}/{len(plan)}] fold {fold.index}", f"fold {fold.index}")


def summarize(runs_dir: Path) -> dict[str, dict[str, Any]]:
    """Per method: seeds averaged within each fold, then mean ± sd over the folds (sd needs two folds)."""
    by: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for f in sorted(runs_dir.glob("*/metrics.json")):
        name = RUN_DIR.match(f.parent.name)
        m = json.loads(f.read_text())
        if name and m["test"].get("macro_f1") is not None:
            by.setdefault(name["method"], {}).setdefault(int(name["fold"]), []).append(m)
    out: dict[str, dict[str, Any]] = {}
    for method, folds in by.items():
        f1 = {k: statistics.mean(m["test"]["macro_f1"] for m in ms) for k, ms in sorted(folds.items())}
        acc = [statistics.mean(m["test"]["accuracy"] for m in ms) for ms in folds.values()]
        every = [m for ms in folds.values() for m in ms]
        out[method] = {"label": METHODS.get(method, (method,))[0], "fold_macro_f1": f1,
                       "mean": statistics.mean(f1.values()),
                       "sd": statistics.stdev(f1.values()) if len(f1) > 1 else None,
                       "accuracy": statistics.mean(acc), "folds_done": len(f1),
                       "seeds": max(len(ms) for ms in folds.values()),
                       "wall_s": statistics.mean(m["wall_seconds"] for m in every)}
    return out


def table(summary: dict[str, dict[str, Any]], k: int, title: str) -> str:
    lines = [f"**{title}**", "", "| method | macro-F1 mean ± sd over folds (per fold) | accuracy mean | folds done | "
             "seeds | wall s / run |", "|---|---|---|---|---|---|"]
    order = [m for m in METHODS if m in summary] + sorted(set(summary) - set(METHODS))
    for method in order:
        s = summary[method]
        sd = f" ± {s['sd']:.4f}" if s["sd"] is not None else " ± –"
        per = ", ".join(f"{v:.3f}" for v in s["fold_macro_f1"].values())
        lines.append(f"| {s['label']} | {s['mean']:.4f}{sd} ({per}) | {s['accuracy']:.4f} | {s['folds_done']}/{k} "
                     f"| {s['seeds']} | {s['wall_s']:.1f} |")
    return "\n".join(lines)


def run_final(args: argparse.Namespace, pairs: list[Pair], ann: dict[Any, Any], out: Path) -> str:
    """The chosen methods once per seed on the ordinary split, scored on the real test split."""
    splits = split_pairs(pairs, args.cfg.data)
    for method in args.final:
        for seed in range(1 if method in DETERMINISTIC else args.seeds):
            run_one(args, method, seed, splits, ann, out / "final" / f"{method}-f0-s{seed}", "[final]",
                    "the ordinary split")
    summary = summarize(out / "final")
    lines = ["**Held-out test (reported once)** — trained on the ordinary split's seed/logs, early-stopped on its "
             f"validation queries; {len({p.query_id for p in splits.test})} test queries, {len(splits.test)} pairs",
             "", "| method | test macro-F1 (mean ± sd over seeds) | accuracy | seeds |", "|---|---|---|---|"]
    for method in [m for m in METHODS if m in summary]:
        ms = [json.loads(f.read_text())["test"] for f in sorted((out / "final").glob(f"{method}-f0-s*/metrics.json"))]
        f1 = [m["macro_f1"] for m in ms]
        sd = f" ± {statistics.stdev(f1):.4f}" if len(f1) > 1 else ""
        lines.append(f"| {METHODS[method][0]} | {statistics.mean(f1):.4f}{sd} | "
                     f"{statistics.mean(m['accuracy'] for m in ms):.4f} | {len(f1)} |")
    return "\n".join(lines)


def check_folds(folds: list[Fold], args: argparse.Namespace, path: Path) -> None:
    """A rerun must deal the same folds with the same settings, or finished runs made otherwise would mix into
    the table (a run is skipped when its metrics exist).  Written once, atomically: workers start side by side."""
    held = {"folds": {str(f.index): f.held_out for f in folds}, "profile": args.profile, "set": sorted(args.set),
            "annotations": str(Path(args.annotations).resolve()) if args.annotations else None}
    if path.exists():
        if json.loads(path.read_text()) != held:
            raise SystemExit(f"{path}: this --out was made with other folds or settings (--data, --folds, --profile, "
                             "--set or --annotations); use a new --out")
        return
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(held, indent=1))
    tmp.replace(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--methods", default="lexical,a,e", help=f"comma-separated, of {', '.join(METHODS)}")
    ap.add_argument("--annotations", help="merged annotations.jsonl (methods b, c, d and teacher)")
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--workers", type=int, default=1, help="split the runs over this many processes ...")
    ap.add_argument("--worker", type=int, default=0, help="... of which this is one (0-based)")
    ap.add_argument("--final", default="", help="after choosing: these methods on the real test split, once")
    args = ap.parse_args()
    if args.workers < 1 or not 0 <= args.worker < args.workers or args.seeds < 1:
        raise SystemExit(f"--workers {args.workers} --worker {args.worker} --seeds {args.seeds}: need workers ≥ 1, "
                         "0 ≤ worker < workers and seeds ≥ 1")
    args.methods = parse_methods(args.methods, args.annotations)
    args.final = parse_methods(args.final, args.annotations) if args.final else []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    args.cfg_over = parse_overrides(args.set)
    args.cfg = load_config(args.profile, overrides=args.cfg_over)
    pairs, _ = load(args.data, synthetic_noise=args.cfg.data.synthetic_noise)
    args.pairs = pairs
    ann = load_annotations(args.annotations) if args.annotations else {}
    try:
        folds = query_folds(pairs, args.cfg.data, args.folds)
    except ValueError as e:
        raise SystemExit(f"--folds {args.folds}: {e}") from None
    check_folds(folds, args, out / "folds.json")
    print(f"{args.folds} folds over {sum(len(f.held_out) for f in folds)} development queries "
          f"({', '.join(str(len(f.held_out)) for f in folds)} held out)", flush=True)
    if not args.final:  # the folds are for choosing; once --final is asked for, nothing is chosen any more
        run_folds(args, folds, ann, out)
    summary = summarize(out / "runs")
    text = table(summary, args.folds, f"Query-grouped {args.folds}-fold cross-validation on `{args.data}` "
                 "(held-out development queries; the test split unused)")
    result: dict[str, Any] = {"data": args.data, "folds": args.folds, "profile": args.profile, "set": args.set,
                              "methods": summary}
    if args.final:
        final = run_final(args, pairs, ann, out)
        text += "\n\n" + final
        result["final"] = summarize(out / "final")
    (out / "cv_table.md").write_text(text + "\n")
    (out / "cv.json").write_text(json.dumps(result, indent=1))
    print(text)


if __name__ == "__main__":
    main()
