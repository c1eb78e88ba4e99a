"""Annotation throughput with the SmolLM2 teacher: one core (one shard, 1 thread) and both cores (two shards
side by side, 1 thread each), through the real ``distillery annotate`` processes, plus one in-process batch
split into prefill and decoding time by the decoder's own clock.  ``--set teacher.infer_dtype=float32``
measures the float32 weights beside the default (bf16 where the CPU has AMX/AVX512-BF16).

    .venv/bin/python benchmarks/annotate_throughput.py --teacher DIR --split-batches 64 128 --reps 2 --cascade-ab \
        --no-shards --set teacher.max_new_tokens=80 --out /tmp/thr
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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
            "parse_failures": r.parse_failures, "decode_tok_per_s_per_shard": r.decode_tokens_per_second,
            "prefill_tok_per_s_per_shard": r.prefill_tokens_per_second}


def stream_bandwidth(mb: int = 512, reps: int = 5) -> float:
    """GB/s one thread reads from memory (a sum over a tensor far larger than the caches): decoding at these
    batch sizes streams every weight and every row's KV cache once per step, so this bounds its speed."""
    import torch

    torch.set_num_threads(1)
    x = torch.ones(mb * 2**20 // 4)
    x.sum()
    t0 = time.perf_counter()
    for _ in range(reps):
        x.sum()
    return reps * x.numel() * 4 / (time.perf_counter() - t0) / 1e9


def split_prefill_decode(args: argparse.Namespace, batch: int) -> list[dict[str, object]]:
    """One batch, one thread, the decoder's own clock for prefill and decoding.  With ``--cascade-ab`` the same
    batch is decoded alternately with and without the shared-prefix cascade attention, ``--reps`` times each
    (side by side in one process, so that the host's drift hits both settings alike)."""
    import torch

    from distillery.annotation import select_pairs
    from distillery.config import load_config, parse_overrides
    from distillery.data.spec import load
    from distillery.teacher.generate import DecodeTiming
    from distillery.teacher.inference import load_teacher

    torch.set_num_threads(1)
    cfg = load_config("demo", overrides=parse_overrides(
        [*args.set, "annotate.split=all", f"annotate.max_pairs={batch}", "teacher.threads=1"]))
    pairs = select_pairs(load(args.data)[0], cfg)
    teacher = load_teacher(args.teacher, cfg)
    settings = (False, True) if args.cascade_ab else (teacher.decoder.cascade,)
    teacher.answer(pairs[:8], 8)  # warm-up: first-call kernel set-up stays out of the figures
    rows: list[dict[str, object]] = []
    for rep in range(args.reps):
        for cascade in settings:
            teacher.decoder.cascade, teacher.decoder.timing = cascade, DecodeTiming()
            t0, c0 = time.perf_counter(), time.process_time()
            answers = teacher.answer(pairs, len(pairs))
            total, total_cpu = time.perf_counter() - t0, time.process_time() - c0
            t = teacher.decoder.timing
            rows.append({"batch": len(pairs), "rep": rep, "cascade": cascade, "dtype": str(teacher.model.dtype),
                         "max_new_tokens": cfg.teacher.max_new_tokens, "prompt_tokens": t.prompt_tokens,
                         "prefill_s": t.prefill_seconds, "prefill_tok_per_s": t.prompt_tokens / t.prefill_seconds,
                         "decode_s": t.decode_seconds, "decode_steps": t.steps, "decode_tokens": t.decode_tokens,
                         "decode_tok_per_s": t.decode_tokens / t.decode_seconds,
                         "generated_tokens": sum(a.generated_tokens for a in answers),
                         "parse_failures": sum(a.parse_error is not None for a in answers),
                         "forced_labels": sum(a.forced_label for a in answers), "answer_s": total,
                         "answer_cpu_s": total_cpu})
            print(json.dumps(rows[-1]), flush=True)
    if args.profile:
        print(profile_ops(teacher, pairs), flush=True)
    return rows


def profile_ops(teacher: Any, pairs: list[Any]) -> str:
    """torch.profiler's top operators over one more answer() of the batch (prefill included, a few %)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        teacher.answer(pairs, len(pairs))
    return str(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default="smollm2")
    ap.add_argument("--data", default=ESCI)
    ap.add_argument("--pairs", type=int, default=48, help="pairs per shard")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--split-batches", type=int, nargs="*", default=None,
                    help="batch sizes of the in-process prefill/decode split (default: --batch-size)")
    ap.add_argument("--reps", type=int, default=1, help="repeats of each split setting")
    ap.add_argument("--cascade-ab", action="store_true", help="split with and without the cascade attention")
    ap.add_argument("--profile", action="store_true", help="print the top operators of one more batch")
    ap.add_argument("--no-shards", action="store_true", help="only the in-process split")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res: dict[str, object] = {"stream_gb_per_s": stream_bandwidth()}
    print(json.dumps(res), flush=True)
    res["split"] = [r for b in (args.split_batches or [args.batch_size]) for r in split_prefill_decode(args, b)]
    for n in () if args.no_shards else (1, 2):
        res[f"shards{n}"] = shards(args, n, out / f"shards{n}")
        print(json.dumps(res[f"shards{n}"], indent=1), flush=True)
    (out / "throughput.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
