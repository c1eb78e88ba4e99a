"""Serving benchmark: HF pipeline, PyTorch eager, onnxruntime (fp32, fused, int8), OpenVINO bf16, Triton.

    nice -n 5 .venv/bin/python benchmarks/serving.py --model /tmp/esci-head \\
        --data esci:/work/shared/data/esci-us/esci_us_dev.tsv.gz --out /tmp/serving-bench

Side by side in one run, on one core and on both (CPU affinity + thread counts; the Triton server
inherits the affinity), for batch 1, 8 and 32: pairs/s, p50/p99 latency per call (text in,
probabilities out, tokenising included), on held-out ESCI pairs (the test split by query) in three
shapes: every pair padded to 128 tokens; the student's real inputs in data order (padded to the
longest of each batch); and the same pairs length-sorted before batching ("sorted").  Each figure is
also given as % of the core's measured fp32 GEMM FLOP/s, counting the FLOPs of each batch padded to its
longest pair (the "+ length groups" systems and Triton's student, which run length-sorted micro-batches of
--micro-batch rows, compute less than that, so their % is an upper bound).  "Triton … direct" is the
``relevance_direct`` model: tokenizer and student in one python stub instead of the two-step ensemble.
Writes results.json and results.md to --out, headed by the CPU (model, ISA features that decide each path)
and with the precision each system really ran on it (OpenVINO bf16 runs fp32 without AMX/AVX512-BF16).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from distillery import hardware
from distillery.serving.preprocess import TextEncoder
from distillery.serving.runtime import GraphStudent, runs_at

Scorer = Callable[[list[str], list[str]], np.ndarray]


def gemm_gflops(threads: int, n: int = 1024, reps: int = 12) -> float:
    """Best fp32 GEMM rate (GFLOP/s) of torch with ``threads`` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def flops_per_token(cfg: dict, seq: int) -> float:
    """Encoder FLOPs per token at sequence length ``seq``: the linear layers plus QKᵀ and AV."""
    h, layers, inter = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"]
    return layers * (2 * (4 * h * h + 2 * h * inter) + 4 * seq * h)


def held_out(spec: str, model_dir: Path, limit: int) -> tuple[list[str], list[str]]:
    from distillery.config import load_config
    from distillery.data.spec import load
    from distillery.data.splits import split_pairs
    from distillery.student.model import StudentMeta

    fields = StudentMeta.load(model_dir).item_fields
    pairs, _ = load(spec)
    test = split_pairs(pairs, load_config("demo").data).test[:limit]
    return [p.query for p in test], [p.item_text(fields) for p in test]


def batches(queries: list[str], items: list[str], size: int, sort: bool, enc: TextEncoder
            ) -> list[tuple[list[str], list[str]]]:
    order = list(range(len(queries)))
    if sort:  # length-aware batching: neighbours in token length share a batch, little is padded
        lengths = enc.encode(queries, items)["attention_mask"].sum(1).tolist()
        order = sorted(order, key=lambda i: lengths[i])
    return [([queries[i] for i in order[s:s + size]], [items[i] for i in order[s:s + size]])
            for s in range(0, len(order), size)]


def measure(score: Scorer, work: list[tuple[list[str], list[str]]], enc: TextEncoder, cfg: dict, pad: int,
            min_s: float, peak: float) -> dict:
    """Run ``work`` (repeating it until ``min_s``) and return throughput, latency and % of GEMM peak."""
    score(*work[0])  # warm-up
    lat, pairs, flops, t0 = [], 0, 0.0, time.perf_counter()
    while True:
        for q, it in work:
            t = time.perf_counter()
            score(q, it)
            lat.append(time.perf_counter() - t)
            seq = pad or int(enc.encode(q, it)["input_ids"].shape[1])
            pairs += len(q)
            flops += len(q) * seq * flops_per_token(cfg, seq)
        if time.perf_counter() - t0 >= min_s and len(lat) >= 3:
            break
    wall = sum(lat)
    return {"pairs_per_s": pairs / wall, "p50_ms": 1e3 * float(np.percentile(lat, 50)),
            "p99_ms": 1e3 * float(np.percentile(lat, 99)), "calls": len(lat),
            "gflops": flops / wall / 1e9, "pct_gemm": 100 * flops / wall / 1e9 / peak}


def hf_pipeline(model_dir: Path, pad: int) -> Scorer:
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(model_dir), device=-1, top_k=None)
    kwargs = {"padding": "max_length", "max_length": pad, "truncation": "only_second"} if pad else \
        {"truncation": "only_second", "max_length": 128}
    labels = list(pipe.model.config.id2label.values())

    def score(q: list[str], it: list[str]) -> np.ndarray:
        out = pipe([{"text": a, "text_pair": b} for a, b in zip(q, it, strict=True)], batch_size=len(q), **kwargs)
        return np.array([[{d["label"]: d["score"] for d in row}[lab] for lab in labels] for row in out])
    return score


def torch_eager(model_dir: Path, pad: int) -> Scorer:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir))
    model.eval()

    @torch.no_grad()
    def score(q: list[str], it: list[str]) -> np.ndarray:
        b = tok(q, it, truncation="only_second", max_length=128, return_tensors="pt",
                padding="max_length" if pad else True)
        return torch.softmax(model(**b).logits, -1).numpy()
    return score


def in_process(student: GraphStudent, model_dir: Path, pad: int) -> Scorer:
    """Text in, probabilities out in this process: the same TextScorer as the ``relevance_direct`` model."""
    from distillery.serving.scorer import TextScorer

    scorer = TextScorer(TextEncoder.from_dir(model_dir, pad_to=pad), student)
    return lambda q, it: scorer.score(q, it)["PROBS"]


def ort(onnx: Path, model_dir: Path, pad: int, threads: int, micro_batch: int = 0) -> Scorer:
    from distillery.serving.runtime import OnnxStudent

    return in_process(OnnxStudent(onnx, threads=threads, micro_batch=micro_batch), model_dir, pad)


def openvino(onnx: Path, model_dir: Path, pad: int, threads: int, micro_batch: int, precision: str) -> Scorer:
    from distillery.serving.runtime import OpenVinoStudent

    student = OpenVinoStudent(onnx, threads=threads, micro_batch=micro_batch, precision=precision)
    print(f"  OpenVINO runs the student in {student.precision}", flush=True)
    return in_process(student, model_dir, pad)


def triton(url: str, protocol: str, model: str, version: str = "") -> Scorer:
    from distillery.serving.client import RelevanceClient

    client = RelevanceClient(url, protocol=protocol, timeout_s=120)
    return lambda q, it: client.score(q, it, model=model, version=version)


def build_repo(model_dir: Path, work: Path, threads: int, pad: int, export: object, micro_batch: int) -> Path:
    """v1 fused fp32, v2 int8 and v3 bf16 (OpenVINO) side by side, from one parity-gated export."""
    from distillery.config import ExportConfig
    from distillery.export.repository import write_version

    repo = work / f"repo-t{threads}-p{pad}"
    opts = ExportConfig(max_batch=64, threads=threads, pad_to=pad, queue_delay_us=0, micro_batch=micro_batch)
    write_version(model_dir, repo, 1, export.fused, opts)  # type: ignore[attr-defined]
    from distillery.export.quantize import SETTINGS

    write_version(model_dir, repo, 2, export.int8, opts, promote=False,  # type: ignore[attr-defined]
                  runtime={"engine": "onnxruntime", "precision": "int8", "quantization": SETTINGS})
    write_version(model_dir, repo, 3, export.onnx, opts, promote=False,  # type: ignore[attr-defined]
                  runtime={"engine": "openvino", "precision": "bf16"})
    return repo


def systems(model_dir: Path, export: object, pad: int, threads: int, server: object, micro: int
            ) -> dict[str, Callable[[], Scorer]]:
    """Name → a factory, so that only the systems asked for are loaded."""
    ex, http, grpc = export, server.http_url, server.grpc_url  # type: ignore[attr-defined]
    return {
        "HF pipeline": lambda: hf_pipeline(model_dir, pad),
        "PyTorch eager": lambda: torch_eager(model_dir, pad),
        "onnxruntime fp32": lambda: ort(ex.onnx, model_dir, pad, threads),  # type: ignore[attr-defined]
        "onnxruntime fp32 fused": lambda: ort(ex.fused, model_dir, pad, threads),  # type: ignore[attr-defined]
        "onnxruntime fp32 fused + length groups":
            lambda: ort(ex.fused, model_dir, pad, threads, micro),  # type: ignore[attr-defined]
        "onnxruntime int8": lambda: ort(ex.int8, model_dir, pad, threads),  # type: ignore[attr-defined]
        "onnxruntime int8 + length groups":
            lambda: ort(ex.int8, model_dir, pad, threads, micro),  # type: ignore[attr-defined]
        "OpenVINO bf16 + length groups":
            lambda: openvino(ex.onnx, model_dir, pad, threads, micro, "bf16"),  # type: ignore[attr-defined]
        "Triton HTTP fp32": lambda: triton(http, "http", "relevance_v1"),
        "Triton gRPC fp32": lambda: triton(grpc, "grpc", "relevance_v1"),
        "Triton gRPC direct fp32": lambda: triton(grpc, "grpc", "relevance_direct", "1"),
        "Triton gRPC int8": lambda: triton(grpc, "grpc", "relevance_v2"),
        "Triton gRPC direct int8": lambda: triton(grpc, "grpc", "relevance_direct", "2"),
        "Triton gRPC direct bf16": lambda: triton(grpc, "grpc", "relevance_direct", "3"),
    }


OVERHEAD_PAIRS = {  # in-process system → the Triton systems that serve the same graph the same way
    "onnxruntime fp32 fused": ("Triton gRPC fp32", "Triton gRPC direct fp32"),
    "OpenVINO bf16 + length groups": ("Triton gRPC direct bf16",),
}


def ran_precision(system: str) -> str:
    """The precision a system runs at on this CPU (Triton's stubs run on the same CPU as this process)."""
    if "bf16" in system or "OpenVINO" in system:
        return runs_at({"engine": "openvino", "precision": "bf16"})
    return "int8" if "int8" in system else "fp32"


def overhead(scorers: dict[str, Scorer], queries: list[str], items: list[str]) -> list[dict]:
    """Triton's per-request overhead at batch 1, measured by paired calls.

    Each pair is scored in-process and through Triton back to back, alternating which goes first, so
    that both see the same pair and the same moment of machine load; the figure is the median of the
    per-pair differences (and the difference of the two p50s, for comparison with the tables).
    """
    rows = []
    for local, remotes in OVERHEAD_PAIRS.items():
        for remote in remotes:
            if local not in scorers or remote not in scorers:
                continue
            a, b = scorers[local], scorers[remote]
            a(queries[:1], items[:1]), b(queries[:1], items[:1])  # warm-up
            t_local, t_remote = [], []
            for i, (q, it) in enumerate(zip(queries, items, strict=True)):
                for first in ((a, b) if i % 2 else (b, a)):
                    t = time.perf_counter()
                    first([q], [it])
                    (t_local if first is a else t_remote).append(time.perf_counter() - t)
            diff = np.subtract(t_remote, t_local)
            rows.append({"overhead": remote, "in_process": local, "pairs": len(queries),
                         "p50_in_process_ms": 1e3 * float(np.median(t_local)),
                         "p50_triton_ms": 1e3 * float(np.median(t_remote)),
                         "median_paired_diff_ms": 1e3 * float(np.median(diff))})
            r = rows[-1]
            print(f"  overhead {remote:<24} vs {local:<30} p50 {r['p50_triton_ms']:.2f} vs "
                  f"{r['p50_in_process_ms']:.2f} ms; median paired difference {r['median_paired_diff_ms']:.2f} ms",
                  flush=True)
    return rows


def agreement(score: Scorer, ref: np.ndarray, queries: list[str], items: list[str]) -> float:
    probs = np.concatenate([score(queries[i:i + 32], items[i:i + 32]) for i in range(0, len(queries), 32)])
    return float(np.mean(probs.argmax(1) == ref.argmax(1)))


def run_cores(cores: int, args: argparse.Namespace, data: tuple[list[str], list[str]], export: object,
              cfg: dict, ref: np.ndarray) -> list[dict]:
    from distillery.serving.server import TritonServer

    os.sched_setaffinity(0, set(range(cores)))  # the Triton server started below inherits it
    peak = gemm_gflops(cores)
    print(f"{cores} core(s): fp32 GEMM {peak:.1f} GFLOP/s", flush=True)
    rows: list[dict] = []
    q, it = data[0][:args.limit], data[1][:args.limit]
    for pad in (128, 0) if "padded128" in args.shapes else (0,):
        enc = TextEncoder.from_dir(args.model, pad_to=pad)
        with TritonServer(build_repo(args.model, args.out, cores, pad, export, args.micro_batch)) as server:
            loaded: dict[str, Scorer] = {}
            for name, factory in systems(args.model, export, pad, cores, server, args.micro_batch).items():
                if args.systems and not any(k.lower() in name.lower() for k in args.systems.split(",")):
                    continue
                score = loaded[name] = factory()
                torch.set_num_threads(cores)
                for shape in [x for x in (("padded128",) if pad else ("real", "sorted")) if x in args.shapes]:
                    for b in args.batches:
                        work = batches(q, it, b, shape == "sorted", enc)
                        r = measure(score, work, enc, cfg, pad, args.min_seconds, peak)
                        rows.append({"cores": cores, "system": name, "inputs": shape, "batch": b,
                                     "ran": ran_precision(name), "gemm_gflops": peak, **r})
                        print(f"  {name:<24} {shape:<9} b={b:<3} {r['pairs_per_s']:8.1f} pairs/s  "
                              f"p50 {r['p50_ms']:8.2f} ms  p99 {r['p99_ms']:8.2f} ms  {r['pct_gemm']:5.1f}% GEMM",
                              flush=True)
                if not pad and cores == 1:
                    rows.append({"cores": cores, "system": name, "agreement": agreement(score, ref, *data)})
            if not pad and args.overhead:
                torch.set_num_threads(cores)
                rows += [{"cores": cores, **r} for r in overhead(loaded, q[:args.overhead], it[:args.overhead])]
    return rows


def main() -> int:
    from distillery.export.pipeline import export_student

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--limit", type=int, default=128, help="held-out pairs timed per configuration")
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--cores", default="1,2")
    p.add_argument("--min-seconds", type=float, default=1.5)
    p.add_argument("--systems", default="", help="only systems whose name contains one of these (comma-separated)")
    p.add_argument("--micro-batch", type=int, default=8,
                   help="rows per length-sorted onnxruntime call in the '+ length groups' systems and Triton")
    p.add_argument("--shapes", default="padded128,real,sorted", help="input shapes to time")
    p.add_argument("--overhead", type=int, default=0,
                   help="also measure Triton's batch-1 overhead by paired calls on this many held-out pairs")
    p.add_argument("--reuse-export", action="store_true", help="time the ONNX files of an earlier run (no gate)")
    p.add_argument("--report-only", action="store_true", help="rewrite results.md/png from results.json")
    args = p.parse_args()
    if args.report_only:
        print(write_markdown(json.loads((args.out / "results.json").read_text()), args.out))
        return 0
    args.batches = [int(b) for b in args.batches.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    data = held_out(args.data, args.model, 100000)
    print(f"held-out pairs: {len(data[0])}", flush=True)
    if args.reuse_export and (args.out / "onnx" / "student.int8.onnx").exists():
        from distillery.export.pipeline import ExportResult
        from distillery.export.quantize import quantize_int8

        d = args.out / "onnx"  # the gated graphs of an earlier run; int8 is re-quantised with today's settings
        export = ExportResult(d / "student.onnx", d / "student.fused.onnx",
                              quantize_int8(d / "student.fused.onnx", d / "student.int8.onnx"))
    else:
        export = export_student(args.model, args.out / "onnx", data[0], data[1], int8=True)
    print(f"CPU: {hardware.cpu().line()}", flush=True)
    for r in export.reports:
        print("parity", r.line(), flush=True)
    for refused in getattr(export, "refused", []):
        print(f"gate refused {refused['precision']} (timed anyway, not served by export): {refused['reason']}")
    ref = agreement_ref(args.model, data)
    cfg = json.loads((args.model / "config.json").read_text())
    rows = [{"parity": [r.to_dict() for r in export.reports], "held_out_pairs": len(data[0]),
             "hardware": hardware.describe(), "refused": getattr(export, "refused", [])}]
    for cores in (int(c) for c in args.cores.split(",")):
        rows += run_cores(cores, args, data, export, cfg, ref)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    print(f"wrote {args.out / 'results.json'} and {write_markdown(rows, args.out)}")
    return 0


def write_markdown(rows: list[dict], out: Path) -> Path:
    """results.md (one table per core count and input shape) and results.png (pairs/s at batch 32)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [r for r in rows if "pairs_per_s" in r]
    agree = {r["system"]: r["agreement"] for r in rows if "agreement" in r}
    hw = next((r["hardware"] for r in rows if "hardware" in r), None)
    lines = []
    if hw:
        lines += [f"CPU: {hardware.CpuInfo(hw['model'], hw['cpus'], tuple(hw['flags'])).line()}", ""]
    for refused in next((r.get("refused", []) for r in rows if "hardware" in r), []):
        lines += [f"- export gate refused {refused['precision']} (timed here all the same): {refused['reason']}", ""]
    for cores in sorted({r["cores"] for r in timed}):
        peak = next(r["gemm_gflops"] for r in timed if r["cores"] == cores)
        for shape in ("padded128", "real", "sorted"):
            sel = [r for r in timed if r["cores"] == cores and r["inputs"] == shape]
            if not sel:
                continue
            lines += [f"### {cores} core(s), inputs: {shape} (fp32 GEMM {peak:.0f} GFLOP/s)", "",
                      "| system | ran | batch | pairs/s | p50 ms | p99 ms | % of GEMM | label agreement |",
                      "|---|---|---:|---:|---:|---:|---:|---:|"]
            for r in sel:
                a = agree.get(r["system"])
                lines.append(f"| {r['system']} | {r.get('ran', '?')} | {r['batch']} | {r['pairs_per_s']:.1f} | "
                             f"{r['p50_ms']:.2f} | "
                             f"{r['p99_ms']:.2f} | {r['pct_gemm']:.0f}% | {'' if a is None else f'{100 * a:.1f}%'} |")
            lines.append("")
    over = [r for r in rows if "overhead" in r]
    if over:
        lines += ["### Triton overhead at batch 1 (paired calls)", "",
                  "| Triton system | in-process system | pairs | p50 Triton ms | p50 in-process ms | "
                  "median paired difference ms |", "|---|---|---:|---:|---:|---:|"]
        lines += [f"| {r['overhead']} | {r['in_process']} | {r['pairs']} | {r['p50_triton_ms']:.2f} | "
                  f"{r['p50_in_process_ms']:.2f} | {r['median_paired_diff_ms']:.2f} |" for r in over]
    (out / "results.md").write_text("\n".join(lines), encoding="utf-8")
    fig, ax = plt.subplots(figsize=(8, 4))
    b32 = [r for r in timed if r["batch"] == 32 and r["cores"] == 1]
    labels = [f"{r['system']} ({r['inputs']})" for r in b32]
    ax.barh(labels, [r["pairs_per_s"] for r in b32], color="#58a")
    ax.set_xlabel("pairs/s, batch 32, one core")
    ax.tick_params(axis="y", labelsize=6)
    fig.tight_layout()
    fig.savefig(out / "results.png", dpi=110)
    plt.close(fig)
    return out / "results.md"


def agreement_ref(model_dir: Path, data: tuple[list[str], list[str]]) -> np.ndarray:
    score = torch_eager(model_dir, 0)
    q, it = data
    return np.concatenate([score(q[i:i + 32], it[i:i + 32]) for i in range(0, len(q), 32)])


if __name__ == "__main__":
    sys.exit(main())
