"""Serving fixtures: two tiny random-init students, one repository and ONE real Triton server per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.students import make_student as make_tiny_student

QUERIES = ["usb c cable", "red summer dress", "wireless mouse for laptop", "kids running shoes size 12",
           "stainless steel water bottle 1l", "a very long query about a garden hose with a brass nozzle"]
ITEMS = ["Anker USB-C to USB-C cable 2m | Anker | black",
         '{"title": "Floral summer dress", "brand": "Zara", "color": "red", "attributes": "cotton"}',
         "Logitech M185 wireless mouse | Logitech",
         "Garden hose 30 m with brass spray nozzle, kink free, UV resistant " * 6,
         "Insulated bottle | Hydro Flask | blue",
         "Brass nozzle"]


def tiny_bounds():  # -> GateBounds
    """Gate bounds for the random-init tiny students.

    Their logits lie within ~0.05 of each other (median top-2 margin 0.005–0.01), below int8's noise (~0.1 on a
    correct 7-bit copy), so label agreement is noise for them and a lower-precision copy is judged by its logits:
    a correct int8 copy stays within 0.2 of fp32 (0.16–0.19 measured on these pairs), while the saturated copy
    of a CPU without VNNI ([0.46, 0.07, 0.47] for [0.33, 0.33, 0.33]) is off by about 1 logit.
    """
    from distillery.export.parity import Bound
    from distillery.export.pipeline import GateBounds

    default = GateBounds.default()
    return GateBounds(fp32=default.fp32, int8=Bound(0.0, 0.5, "tests: tiny student"),
                      bf16=Bound(0.0, 0.1, "tests: tiny student"))


def make_student(out: Path, seed: int) -> Path:
    return make_tiny_student(out, seed, QUERIES, ITEMS)


def reference_probs(student: Path, queries: list[str], items: list[str]) -> np.ndarray:
    """In-process PyTorch probabilities with the foundation's own ``encode``."""
    from distillery.serving.preprocess import item_text
    from distillery.student.model import encode, softmax
    from distillery.student.predictor import Classifier

    clf = Classifier(student)
    texts = [item_text(t, clf.meta.item_fields) for t in items]
    with torch.no_grad():
        logits = clf.model(**encode(clf.tokenizer, queries, texts, clf.meta.max_length)).logits.numpy()
    return softmax(logits)


@pytest.fixture(scope="session")
def students(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("students")
    return make_student(root / "champion", 1), make_student(root / "challenger", 2)


@pytest.fixture(scope="session")
def repo(students: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """v1 (champion) through the CLI, v2 (challenger, int8) and v3 (v1's student in bf16 on OpenVINO)
    through the library."""
    from distillery.cli import main
    from distillery.export.repository import build_repository

    out = tmp_path_factory.mktemp("repo") / "repo"
    code = main(["export", "--model", str(students[0]), "--data", "synthetic:40", "--out", str(out),
                 "--profile", "tiny", "--max-batch", "16"])
    assert code == 0
    from distillery.config import ExportConfig

    build_repository(students[1], out, 2, ExportConfig(int8=True, max_batch=16, require_precision=True),
                     queries=QUERIES, items=ITEMS, promote=False, bounds=tiny_bounds())
    build_repository(students[0], out, 3, ExportConfig(bf16=True, max_batch=16, require_precision=True),
                     queries=QUERIES, items=ITEMS, promote=False, bounds=tiny_bounds())
    return out


@pytest.fixture(scope="session")
def server(repo: Path):
    from distillery.serving.server import TritonServer

    with TritonServer(repo) as s:
        yield s
