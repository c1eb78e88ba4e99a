"""Inference of the exported student (runs inside the python-backend stub, and in-process).

Two engines read the same ONNX file: onnxruntime (fp32, or the int8 graph) and OpenVINO, which runs the
plain fp32 graph in bf16 on CPUs with AMX or AVX512-BF16 (3× onnxruntime fp32 on this machine's AMX
Xeon core, docs/benchmarks.md).  A version directory says which engine serves it in ``runtime.json``.

Triton's dynamic batcher hands the python backend several requests at once, each padded to its own
longest pair.  :func:`merge_requests` pads them to one common length so the batch runs as a single
engine call (one GEMM per layer instead of one per request), and :func:`split_rows` hands each
request its own rows back.  :class:`GraphStudent` can also run a batch as length-grouped micro-batches
(``micro_batch``): rows sorted by token length, each group trimmed to its own longest row.  Imports numpy
and onnxruntime/openvino only (and the stdlib-only :mod:`distillery.hardware`).

Hardware-aware: :func:`runs_at` says which precision a version really runs at on this CPU (OpenVINO keeps
fp32 without AMX/AVX512-BF16), and :func:`load_student` refuses an int8 graph quantised with full-range
weights on a CPU without VNNI, where onnxruntime's u8×s8 kernels saturate (:mod:`distillery.export.quantize`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from distillery import hardware
from distillery.serving.preprocess import INPUT_NAMES

RUNTIME_FILE = "runtime.json"
"""Beside ``model.onnx`` in a version directory: ``{"engine": ..., "precision": ...}`` (int8 adds the
quantiser's settings, ``"quantization": {...}``)."""
ENGINES = {"onnxruntime": ("fp32", "int8"), "openvino": ("fp32", "bf16")}
"""Engine → the precisions it serves (onnxruntime's int8 is a quantised graph; OpenVINO's bf16 a run mode)."""


def session_options(threads: int = 0) -> object:
    """Sequential execution with ``threads`` intra-op threads (0: onnxruntime's default, one per core)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return opts


def length_groups(attention_mask: np.ndarray, micro_batch: int) -> list[np.ndarray]:
    """Row indices sorted by token length, in groups of at most ``micro_batch`` rows (0: one group).

    Real query–item pairs vary 3× in length within a batch; a group of similar lengths trimmed to its own
    longest row wastes little on padding, and a small group's activations stay in cache.
    """
    rows = attention_mask.shape[0]
    if micro_batch <= 0 or micro_batch >= rows:
        return [np.arange(rows)]
    order = np.argsort(attention_mask.sum(axis=1), kind="stable")
    return [order[s:s + micro_batch] for s in range(0, rows, micro_batch)]


class GraphStudent:
    """An exported student (``logits`` and ``probs`` outputs) behind one ``run``; engines supply ``_run_once``."""

    path: Path
    input_names: list[str]
    output_names: list[str]
    micro_batch: int = 0
    precision: str = "fp32"

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output of the graph for one (batch, seq) set of right-padded int64 inputs, rows in order."""
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise ValueError(f"{self.path.name}: missing inputs {missing}")
        mask = np.asarray(feeds["attention_mask"])
        groups = length_groups(mask, self.micro_batch)
        if len(groups) == 1:
            return self._run_once(feeds)
        lengths = mask.sum(axis=1)
        out: dict[str, np.ndarray] = {}
        for idx in groups:
            width = int(lengths[idx].max())
            part = self._run_once({n: np.asarray(feeds[n])[idx, :width] for n in self.input_names})
            for name, value in part.items():
                if name not in out:
                    out[name] = np.empty((len(mask), *value.shape[1:]), dtype=value.dtype)
                out[name][idx] = value
        return out

    def _run_once(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError


def _check_file(path: str | Path) -> Path:
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such ONNX file")
    return Path(path)


class OnnxStudent(GraphStudent):
    """The student on onnxruntime's CPU provider."""

    def __init__(self, path: str | Path, threads: int = 0, micro_batch: int = 0) -> None:
        import onnxruntime as ort

        self.path = _check_file(path)
        self.session = ort.InferenceSession(str(path), sess_options=session_options(threads),
                                            providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.micro_batch = int(micro_batch)

    def _run_once(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ins = {n: np.ascontiguousarray(feeds[n], dtype=np.int64) for n in self.input_names}
        outs = self.session.run(self.output_names, ins)
        return dict(zip(self.output_names, outs, strict=True))


class OpenVinoStudent(GraphStudent):
    """The student on OpenVINO's CPU plugin; ``precision="bf16"`` runs it in bfloat16 where the CPU can.

    On a CPU without bf16 instructions OpenVINO keeps fp32; :attr:`precision` is what it actually runs.
    The plain graph only: onnxruntime's fused contrib operators are not ONNX that OpenVINO reads.
    """

    def __init__(self, path: str | Path, threads: int = 0, micro_batch: int = 0, precision: str = "bf16") -> None:
        import openvino as ov

        if precision not in ENGINES["openvino"]:
            raise ValueError(f"precision={precision!r}: expected one of {ENGINES['openvino']}")
        self.path = _check_file(path)
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                                  "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.input_names = [p.get_any_name() for p in self.compiled.inputs]
        self.output_names = [p.get_any_name() for p in self.compiled.outputs]
        self.micro_batch = int(micro_batch)
        # The compiled model reports the precision it really runs (an ov.Type such as <Type: 'bfloat16'>).
        self.precision = "bf16" if self.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.bf16 else "fp32"

    def _run_once(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self.request.infer({n: np.ascontiguousarray(feeds[n], dtype=np.int64) for n in self.input_names})
        return {p.get_any_name(): np.array(result[p]) for p in self.compiled.outputs}


def runs_at(spec: dict[str, Any], cpu: hardware.CpuInfo | None = None) -> str:
    """The precision a version with runtime ``spec`` really runs at on ``cpu`` (default: this one)."""
    cpu = cpu or hardware.cpu()
    if spec.get("engine") == "openvino" and spec.get("precision") == "bf16" and not cpu.bf16_native:
        return "fp32"
    return str(spec.get("precision", "fp32"))


def check_int8_safe(spec: dict[str, Any], where: str, cpu: hardware.CpuInfo | None = None) -> None:
    """Raise when ``spec`` is an int8 graph with full-range weights and ``cpu`` has no VNNI: its u8×s8
    products would saturate in int16 (wrong answers, not a slowdown).  7-bit weights (``reduce_range``) are
    exact on every CPU."""
    cpu = cpu or hardware.cpu()
    quant = spec.get("quantization") or {}
    if spec.get("precision") == "int8" and not quant.get("reduce_range") and not cpu.int8_vnni:
        raise ValueError(f"{where}: int8 graph quantised with full-range weights (no reduce_range in "
                         f"runtime.json) on a CPU without VNNI ({cpu.line()}): onnxruntime's u8×s8 kernels saturate "
                         "here; re-export it with this version of distillery (7-bit weights)")


def load_student(onnx: str | Path, threads: int = 0, micro_batch: int = 0) -> GraphStudent:
    """The student in ``onnx`` on the engine its version directory's ``runtime.json`` names (default onnxruntime).

    :attr:`GraphStudent.precision` is what it runs on this CPU (:func:`runs_at`)."""
    spec = read_runtime(Path(onnx).parent)
    if spec["engine"] == "openvino":
        return OpenVinoStudent(onnx, threads, micro_batch, spec["precision"])
    check_int8_safe(spec, str(Path(onnx).parent / RUNTIME_FILE))
    student = OnnxStudent(onnx, threads, micro_batch)
    student.precision = runs_at(spec)
    return student


def check_runtime(spec: dict[str, Any], where: str = "runtime") -> dict[str, Any]:
    """``spec`` with defaults filled in; an unknown engine or a precision it does not serve is named."""
    full = {"engine": "onnxruntime", "precision": "fp32", **spec}
    if full["engine"] not in ENGINES:
        raise ValueError(f"{where}: engine {full['engine']!r} is not one of {sorted(ENGINES)}")
    if full["precision"] not in ENGINES[full["engine"]]:
        raise ValueError(f"{where}: {full['engine']} serves precision {ENGINES[full['engine']]}, "
                         f"not {full['precision']!r}")
    return full


def read_runtime(version_dir: Path) -> dict[str, Any]:
    """The ``runtime.json`` of a version directory (onnxruntime where there is none)."""
    path = version_dir / RUNTIME_FILE
    spec = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    return check_runtime(spec, str(path))


def merge_requests(batches: list[dict[str, np.ndarray]]) -> tuple[dict[str, np.ndarray], list[int]]:
    """Stack several requests' inputs into one batch, right-padded with zeros to the longest.

    Zero is the pad id, a masked position and segment 0, so padded positions change nothing.
    Returns the merged inputs and each request's row count.
    """
    if not batches:
        raise ValueError("merge_requests: no requests")
    width = max(b["input_ids"].shape[1] for b in batches)
    merged: dict[str, np.ndarray] = {}
    for name in INPUT_NAMES:
        parts = []
        for b in batches:
            arr = b[name]
            pad = width - arr.shape[1]
            parts.append(np.pad(arr, ((0, 0), (0, pad))) if pad else arr)
        merged[name] = np.concatenate(parts, axis=0).astype(np.int64, copy=False)
    return merged, [b["input_ids"].shape[0] for b in batches]


def split_rows(outputs: dict[str, np.ndarray], counts: list[int]) -> list[dict[str, np.ndarray]]:
    """Undo :func:`merge_requests` on the outputs: one dict per request, rows in order."""
    bounds = np.cumsum([0, *counts])
    return [{k: v[bounds[i]:bounds[i + 1]] for k, v in outputs.items()} for i in range(len(counts))]
