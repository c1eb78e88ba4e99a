"""The distillation table of issue 4: teacher, (a)–(e) over seeds, CRSD ablations, retention and wall time.

Resumable: every finished run leaves ``runs/<variant>-s<seed>/metrics.json`` and is skipped when the
script is run again; the table is rebuilt from whatever has finished.

Synthetic marketplace, simulated teacher (see benchmarks/sim_teacher.py)::

    nice -n 5 .venv/bin/python benchmarks/distill.py --data synthetic:1500 --teacher sim --out /tmp/bench-syn \\
        --set student.max_length=64 --set train.epochs=2

ESCI with the trained teacher (annotation of the seed and log pairs, and the test pairs for the teacher's
own macro-F1, in two shards side by side)::

    .venv/bin/python benchmarks/distill.py --data esci:../shared/data/esci-us/esci_us_dev.tsv.gz \\
        --teacher TEACHER_DIR --shards 2 --out /tmp/bench-esci --seeds 0 --set annotate.max_pairs=0

and the students in two processes side by side (``--worker 0`` and ``--worker 1``; finished runs are skipped)::

    .venv/bin/python benchmarks/distill.py --data esci:... --teacher TEACHER_DIR \\
        --annotations /tmp/bench-esci/annotations.jsonl --out /tmp/bench-esci --workers 2 --worker 0 \\
        --set student.max_length=64 --set train.threads=1
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from distillery.annotation import annotate_shard, load_annotations, merge_shards, select_pairs  # noqa: E402
from distillery.config import Config, load_config, parse_overrides  # noqa: E402
from distillery.data.schema import get_label_set, label_indices  # noqa: E402
from distillery.data.spec import load  # noqa: E402
from distillery.data.splits import split_pairs  # noqa: E402
from distillery.evaluate import compute_metrics  # noqa: E402
from distillery.student.distill import run_distill  # noqa: E402

# (variant, method, distill overrides, main table?)
RUNS: list[tuple[str, str, dict[str, Any], bool]] = [
    ("(a) human seed labels", "human", {}, True),
    ("(b) teacher hard labels", "hard", {}, True),
    ("(c) soft-label KD", "soft", {}, True),
    ("(d) CRSD", "crsd", {}, True),
    ("(e) human labels, all training pairs", "human-all", {}, True),
    ("CRSD − L_align", "crsd", {"lambda_align": 0.0}, False),
    ("CRSD − in-batch InfoNCE", "crsd", {"lambda_batch": 0.0}, False),
    ("CRSD − reasoning-view CE", "crsd", {"reasoning_view_ce": False}, False),
]


def _slug(variant: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in variant.lower()).strip("-").replace("--", "-")


def annotate(args: argparse.Namespace, cfg: Config, out: Path) -> Path:
    merged = out / "annotations.jsonl"
    if merged.exists():
        return merged
    shards = out / "shards"
    if args.teacher == "sim":
        from sim_teacher import SimTeacher

        pairs, _ = load(args.data, synthetic_noise=cfg.data.synthetic_noise)
        annotate_shard(SimTeacher(), select_pairs(pairs, cfg), 0, 1, shards, cfg, data_name=args.data)
    else:  # the real teacher, one `distillery annotate` process per shard, side by side
        cmd = [sys.executable, "-m", "distillery.cli", "annotate", "--teacher", args.teacher, "--data", args.data,
               "--num-shards", str(args.shards), "--out", str(shards), "--profile", args.profile,
               *[x for s in args.set for x in ("--set", s)], "--set", f"annotate.split={cfg.annotate.split}"]
        procs = [subprocess.Popen([*cmd, "--shard", str(k), "--set", "teacher.threads=1"]) for k in range(args.shards)]
        if any(p.wait() != 0 for p in procs):
            raise SystemExit("annotation failed")
    report = merge_shards(shards, merged)
    print(report.to_markdown())
    return merged


def teacher_scores(pairs: list[Any], ann: dict[Any, Any], cfg: Config) -> dict[str, Any]:
    ls = get_label_set(cfg.data.label_set)
    splits = split_pairs(pairs, cfg.data)
    out: dict[str, Any] = {}
    for name, part in (("test", splits.test), ("logs", splits.logs)):
        got = [(p, ann.get((p.query_id, p.item_id))) for p in part]
        got = [(p, a) for p, a in got if a is not None]
        if not got:
            continue
        y = label_indices([p for p, _ in got], ls, name)
        pred = [ls.index(a["label"]) if a.get("label") and ls.knows(a["label"]) else (t + 1) % ls.num_classes
                for (_, a), t in zip(got, y, strict=True)]
        m = compute_metrics(y, pred, ls.classes)
        out[name] = {"macro_f1": m["macro_f1"], "accuracy": m["accuracy"], "n": m["n"],
                     "parse_failures": sum(1 for _, a in got if a.get("parse_error"))}
    return out


def run_all(args: argparse.Namespace, cfg_over: dict[str, Any], pairs: list[Any], ann: dict[Any, Any],
            out: Path) -> None:
    # The main table over every seed first, then the ablations: a budget cut short still leaves (a)–(e) whole.
    plan = [(v, m, o, s) for s in range(args.seeds) for v, m, o, main in RUNS if main]
    plan += [(v, m, o, s) for s in range(args.ablation_seeds) for v, m, o, main in RUNS if not main]
    if args.only:
        rank = {f"({c})" if len(c) == 1 else c: i for i, c in enumerate(args.only)}
        plan = sorted((x for x in plan if x[0][:3] in rank or x[0] in rank),
                      key=lambda x: (x[3], rank.get(x[0][:3], rank.get(x[0], 0))))
    for i, (variant, method, over, seed) in enumerate(plan, 1):
        if (i - 1) % args.workers != args.worker:
            continue
        run_dir = out / "runs" / f"{_slug(variant)}-s{seed}"
        if (run_dir / "metrics.json").exists():
            continue
        ov = json.loads(json.dumps(cfg_over))
        ov.setdefault("distill", {}).update(over)
        ov.setdefault("train", {})["seed"] = seed
        cfg = load_config(args.profile, overrides=ov)
        print(f"[{i}/{len(plan)}] {variant} seed {seed}", flush=True)
        t0 = time.perf_counter()
        s = run_distill(pairs, ann, cfg, run_dir, method=method, data_name=args.data, variant=variant)
        print(f"    test macro-F1 {s['test']['macro_f1']:.4f} · {time.perf_counter() - t0:.0f} s", flush=True)


def table(out: Path, teacher: dict[str, Any]) -> str:
    rows: dict[str, list[dict[str, Any]]] = {}
    for f in sorted((out / "runs").glob("*/metrics.json")):
        m = json.loads(f.read_text())
        rows.setdefault(m["variant"], []).append(m)
    t_f1 = teacher.get("test", {}).get("macro_f1")
    lines = ["| model | test macro-F1 (mean ± sd) | accuracy | retention | seeds | wall s / run | train examples |",
             "|---|---|---|---|---|---|---|"]
    if t_f1 is not None:
        logs = teacher.get("logs", {})
        lines.append(f"| teacher | {t_f1:.4f} | {teacher['test']['accuracy']:.4f} | 100% | – | – | "
                     f"annotation accuracy on logs {logs.get('accuracy', float('nan')):.4f} "
                     f"(macro-F1 {logs.get('macro_f1', float('nan')):.4f}, n={logs.get('n', 0)}) |")
    for variant, _, _, _ in RUNS:
        ms = rows.get(variant, [])
        if not ms:
            continue
        f1 = [m["test"]["macro_f1"] for m in ms]
        sd = statistics.stdev(f1) if len(f1) > 1 else 0.0
        acc = statistics.mean(m["test"]["accuracy"] for m in ms)
        ret = f"{statistics.mean(f1) / t_f1:.1%}" if t_f1 else "–"
        wall = statistics.mean(m["wall_seconds"] for m in ms)
        lines.append(f"| {variant} | {statistics.mean(f1):.4f} ± {sd:.4f} | {acc:.4f} | {ret} | {len(ms)} | "
                     f"{wall:.0f} | {ms[0]['train_examples']} |")
    return "\n".join(lines)


def truncated_minilm(layers: int, out: Path) -> str:
    """all-MiniLM-L6-v2 keeping its first ``layers`` transformer layers (pretrained weights): a cheaper student
    for budget runs on a shared 2-core machine."""
    target = out / f"minilm-l{layers}"
    if not (target / "config.json").exists():
        from transformers import AutoModel, AutoTokenizer

        from distillery.student.model import minilm_path

        model = AutoModel.from_pretrained(minilm_path())
        model.encoder.layer = model.encoder.layer[:layers]
        model.config.num_hidden_layers = layers
        model.save_pretrained(target)
        AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(target)
    return str(target)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--teacher", required=True, help="sim (synthetic only), smollm2, tiny or a teacher directory")
    ap.add_argument("--annotations", help="use this merged annotation file instead of annotating")
    ap.add_argument("--out", required=True)
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--ablation-seeds", type=int, default=1)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--workers", type=int, default=1, help="split the runs over this many processes ...")
    ap.add_argument("--worker", type=int, default=0, help="... of which this is one (0-based)")
    ap.add_argument("--only", nargs="*", default=[], help="run only these letters (a b d) or variant names")
    ap.add_argument("--student-layers", type=int, default=0,
                    help="train a MiniLM cut to its first N layers (0: the full 6-layer student)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg_over = parse_overrides(args.set)
    if args.student_layers:
        cfg_over.setdefault("student", {})["model"] = truncated_minilm(args.student_layers, out)
    cfg_over.setdefault("annotate", {}).setdefault("split", "all")
    cfg = load_config(args.profile, overrides=cfg_over)
    pairs, _ = load(args.data, synthetic_noise=cfg.data.synthetic_noise)
    ann = load_annotations(args.annotations or annotate(args, cfg, out))
    teacher = teacher_scores(pairs, ann, cfg)
    (out / "teacher.json").write_text(json.dumps(teacher, indent=1))
    print("teacher:", json.dumps(teacher))
    run_all(args, cfg_over, pairs, ann, out)
    text = table(out, teacher)
    (out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
