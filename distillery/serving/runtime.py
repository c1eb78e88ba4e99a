"""onnxruntime inference of the exported student (runs inside the python-backend stub, and in-process).

Triton's dynamic batcher hands the python backend several requests at once, each padded to its own
longest pair.  :func:`merge_requests` pads them to one common length so the batch runs as a single
onnxruntime call (one GEMM per layer instead of one per request), and :func:`split_rows` hands each
request its own rows back.  Imports numpy and onnxruntime only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distillery.serving.preprocess import INPUT_NAMES


def session_options(threads: int = 0) -> object:
    """Sequential execution with ``threads`` intra-op threads (0: onnxruntime's default, one per core)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return opts


class OnnxStudent:
    """An exported student (``logits`` and ``probs`` outputs) behind one ``run``."""

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        import onnxruntime as ort

        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: no such ONNX file")
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), sess_options=session_options(threads),
                                            providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output of the graph for one (batch, seq) set of int64 inputs."""
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise ValueError(f"{self.path.name}: missing inputs {missing}")
        ins = {n: np.ascontiguousarray(feeds[n], dtype=np.int64) for n in self.input_names}
        outs = self.session.run(self.output_names, ins)
        return dict(zip(self.output_names, outs, strict=True))


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
