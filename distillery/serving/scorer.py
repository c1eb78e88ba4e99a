"""Raw text in, label probabilities out, in one process: the student's tokenizer and graph together.

The ``relevance`` ensemble crosses two python-backend stubs per request (tokenizer, then student); the
``relevance_direct`` model runs this scorer in one stub, which saves a process hop at batch 1.  The
benchmark's in-process rows call the same class.  Imports numpy, tokenizers and the engines
(onnxruntime, openvino) only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distillery.serving.preprocess import TextEncoder
from distillery.serving.runtime import GraphStudent, load_student, merge_requests, split_rows

OUTPUT_NAMES = {"probs": "PROBS", "logits": "LOGITS"}
"""Graph output → the text model's output, named like the ensemble's."""


def _named(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {OUTPUT_NAMES[k]: v for k, v in outputs.items() if k in OUTPUT_NAMES}


@dataclass
class TextScorer:
    encoder: TextEncoder
    student: GraphStudent

    @classmethod
    def from_dir(cls, version_dir: str | Path, threads: int = 0, micro_batch: int = 0, pad_to: int = 0
                 ) -> TextScorer:
        """``version_dir`` holds ``model.onnx``, ``runtime.json`` (which engine) and ``student/`` (tokenizer
        files and ``distillery.json``)."""
        d = Path(version_dir)
        return cls(TextEncoder.from_dir(d / "student", pad_to=pad_to),
                   load_student(d / "model.onnx", threads=threads, micro_batch=micro_batch))

    def score(self, queries: list[str], items: list[str]) -> dict[str, np.ndarray]:
        """``PROBS`` and ``LOGITS`` for (query, item text) pairs, rows in order."""
        return _named(self.student.run(self.encoder.encode(queries, items)))

    def score_requests(self, requests: list[tuple[np.ndarray | None, np.ndarray | None]]
                       ) -> list[dict[str, np.ndarray] | Exception]:
        """One result per (QUERY, ITEM) request of a dynamic batch: its outputs, or the error it caused.

        A request that cannot be tokenised fails alone; the others run as one engine call.
        """
        results: list[dict[str, np.ndarray] | Exception] = []
        good: list[int] = []
        feeds = []
        for i, (query, item) in enumerate(requests):
            try:
                feeds.append(self.encoder.encode_request(query, item))
                good.append(i)
                results.append({})
            except ValueError as exc:
                results.append(exc)
        if feeds:
            merged, counts = merge_requests(feeds)
            outputs = self.student.run(merged)
            for i, out in zip(good, split_rows(outputs, counts), strict=True):
                results[i] = _named(out)
        return results
