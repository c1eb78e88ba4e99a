"""Serving fixtures: two tiny random-init students, one repository and ONE real Triton server per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

QUERIES = ["usb c cable", "red summer dress", "wireless mouse for laptop", "kids running shoes size 12",
           "stainless steel water bottle 1l", "a very long query about a garden hose with a brass nozzle"]
ITEMS = ["Anker USB-C to USB-C cable 2m | Anker | black",
         '{"title": "Floral summer dress", "brand": "Zara", "color": "red", "attributes": "cotton"}',
         "Logitech M185 wireless mouse | Logitech",
         "Garden hose 30 m with brass spray nozzle, kink free, UV resistant " * 6,
         "Insulated bottle | Hydro Flask | blue",
         "Brass nozzle"]


def make_student(out: Path, seed: int) -> Path:
    """A random-init tiny student whose head is scaled so its labels differ from pair to pair."""
    from distillery.config import StudentConfig
    from distillery.data.schema import THREE_CLASS
    from distillery.student.model import StudentMeta, build_student

    scfg = StudentConfig(model="tiny")
    tokenizer, model = build_student(scfg, THREE_CLASS, seed=seed)
    # A random-init BERT pools every input to nearly the same vector; amplify the differences and
    # centre the logits on sample pairs so the argmax changes from pair to pair.
    from distillery.student.model import encode

    with torch.no_grad():
        model.eval()
        model.classifier.weight.mul_(300.0)
        logits = model(**encode(tokenizer, QUERIES, ITEMS, 48)).logits
        model.classifier.bias.sub_(logits.mean(0))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    StudentMeta("3class", list(THREE_CLASS.classes), list(scfg.item_fields), 48).save(out)
    return out


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
    """v1 (champion) through the CLI, v2 (challenger, int8) through the library."""
    from distillery.cli import main
    from distillery.export.repository import build_repository

    out = tmp_path_factory.mktemp("repo") / "repo"
    code = main(["export", "--model", str(students[0]), "--data", "synthetic:40", "--out", str(out),
                 "--profile", "tiny", "--max-batch", "16"])
    assert code == 0
    from distillery.export.repository import RepositoryOptions

    build_repository(students[1], out, 2, queries=QUERIES, items=ITEMS, int8=True, promote=False,
                     options=RepositoryOptions(max_batch=16))
    return out


@pytest.fixture(scope="session")
def server(repo: Path):
    from distillery.serving.server import TritonServer

    with TritonServer(repo) as s:
        yield s
