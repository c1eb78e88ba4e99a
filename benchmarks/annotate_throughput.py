"""Annotation throughput with the SmolLM2 teacher: one core (one shard, 1 thread) and both cores (two shards
side by side, 1 thread each), through the real ``distillery annotate`` processes, plus an in-process split of
one batch into prefill and decode time.

    nice -n 5 .venv/bin/python benchmarks/annotate_throughput.py --pairs 48 --batch-size 16 --out /tmp/thr
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from distillery.annotation import merge_shards  # noqa: E402

ESCI = "esci:" + str(REPO.parent / "shared" / "data" / "esci-us" / "esci_us_dev.tsv.gz")


def shards(args: argparse.Namespace, n: int, out: Path) -> dict[str, float]:
    base = [sys.executable, "-m", "distillery.cli", "annotate", "--teacher", args.teacher, "--data", args.data,
            "--num-shards", str(n), "--out", str(out), "--batch-size", str(args.batch_size),
            "--set", "teacher.threads=1", "--set", "annotate.split=all",
            "--set", f"annotate.max_pairs={args.pairs * n}", *[x for s in args.set for x in ("--set", s)]]
    t0 = time.perf_counter()
    procs = [subprocess.Popen([*base, "--shard", str(k)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env={"TQDM_DISABLE": "1", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
             for k in range(n)]
    for p in procs:
        text = p.communicate()[0].decode()
        if p.returncode:
            raise SystemExit(text[-3000:])
        print(text.strip().splitlines()[-1])
    wall = time.perf_counter() - t0
    r = merge_shards(out, out / "merged.jsonl")
    return {"shards": n, "pairs": r.records, "wall_s_incl_load": wall, "pairs_per_s_per_shard": r.pairs_per_second,
            "pairs_per_s_all": r.pairs_per_second_all_shards, "prompt_tok_per_s_per_shard": r.prompt_tokens_per_second,
            "generated_tok_per_s_per_shard": r.generated_tokens_per_second,
            "generated_tok_per_cpu_s": r.generated_tokens_per_cpu_second, "pairs_per_cpu_s": r.pairs_per_cpu_second,
            "parse_failures": r.parse_failures}


def split_prefill_decode(args: argparse.Namespace) -> dict[str, float]:
    """One batch, one thread: time the prompt forward alone, then the whole answer; decode = the rest."""
    import torch

    from distillery.annotation import select_pairs
    from distillery.config import load_config, parse_overrides
    from distillery.data.spec import load
    from distillery.teacher.inference import load_teacher

    torch.set_num_threads(1)
    cfg = load_config("demo", overrides=parse_overrides(
        [*args.set, "annotate.split=all", f"annotate.max_pairs={args.batch_size}", "teacher.threads=1"]))
    pairs = select_pairs(load(args.data)[0], cfg)
    teacher = load_teacher(args.teacher, cfg)
    enc = teacher.tokenizer(teacher.prompter.build(pairs), padding=True, return_tensors="pt",
                            add_special_tokens=False)
    with torch.inference_mode():
        t0, c0 = time.perf_counter(), time.process_time()
        teacher.model(**enc, logits_to_keep=1)
        prefill, prefill_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    answers = teacher.answer(pairs, len(pairs))
    total, total_cpu = time.perf_counter() - t0, time.process_time() - c0
    prompt_tok = int(enc["attention_mask"].sum())
    gen = sum(a.generated_tokens for a in answers)
    return {"batch": len(pairs), "prompt_tokens": prompt_tok, "padded_prompt_tokens": int(enc["input_ids"].numel()),
            "prefill_s": prefill, "prefill_tok_per_s": prompt_tok / prefill, "answer_s": total,
            "generated_tokens": gen, "decode_tok_per_s": gen / max(1e-9, total - prefill),
            "prefill_tok_per_cpu_s": prompt_tok / prefill_cpu,
            "decode_tok_per_cpu_s": gen / max(1e-9, total_cpu - prefill_cpu), "answer_cpu_s": total_cpu,
            "torch_threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default="smollm2")
    ap.add_argument("--data", default=ESCI)
    ap.add_argument("--pairs", type=int, default=48, help="pairs per shard")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    res = {"split": split_prefill_decode(args)}
    print(json.dumps(res["split"], indent=1), flush=True)
    for n in (1, 2):
        res[f"shards{n}"] = shards(args, n, out / f"shards{n}")
        print(json.dumps(res[f"shards{n}"], indent=1), flush=True)
    (out / "throughput.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
