"""A random-init tiny student that serving and A/B tests can tell apart pair by pair."""

from __future__ import annotations

from pathlib import Path

import torch


def make_student(out: Path, seed: int, queries: list[str], items: list[str]) -> Path:
    """A random-init tiny student whose head is scaled so its labels differ from pair to pair."""
    from distillery.config import StudentConfig
    from distillery.data.schema import THREE_CLASS
    from distillery.student.model import StudentMeta, build_student, encode

    scfg = StudentConfig(model="tiny")
    tokenizer, model = build_student(scfg, THREE_CLASS, seed=seed)
    # A random-init BERT pools every input to nearly the same vector; amplify the differences and
    # centre the logits on sample pairs so the argmax changes from pair to pair.
    with torch.no_grad():
        model.eval()
        model.classifier.weight.mul_(300.0)
        logits = model(**encode(tokenizer, queries, items, 48)).logits
        model.classifier.bias.sub_(logits.mean(0))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    StudentMeta("3class", list(THREE_CLASS.classes), list(scfg.item_fields), 48).save(out)
    return out
