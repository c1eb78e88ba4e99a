"""Shared builders of the A/B tests."""

from __future__ import annotations

from distillery.abtest.arms import SplitConfig, split_from_dict


def two_arm(weights: tuple[float, float] = (50, 50), salt: str = "s1") -> SplitConfig:
    return split_from_dict({"experiment": "exp", "salt": salt, "champion": "champion", "arms": [
        {"name": "champion", "model": "relevance", "version": "1", "weight": weights[0]},
        {"name": "challenger", "model": "relevance", "version": "2", "weight": weights[1]}]})


def make_student(out, seed: int):
    """A random-init tiny student (as the serving tests make): its head scaled so scores differ by pair."""
    import torch

    from distillery.config import StudentConfig
    from distillery.data.schema import THREE_CLASS
    from distillery.student.model import StudentMeta, build_student, encode

    scfg = StudentConfig(model="tiny")
    tokenizer, model = build_student(scfg, THREE_CLASS, seed=seed)
    queries = ["thai massage open late", "cheap sushi", "dog grooming", "teeth whitening weekend hours"]
    items = ["Golden Thai Massage Spa | spa", "Lucky Sushi Kitchen | restaurant", "Paws Pet Salon | pet grooming",
             "Smile Clinic | dental clinic"]
    with torch.no_grad():
        model.eval()
        model.classifier.weight.mul_(300.0)
        logits = model(**encode(tokenizer, queries, items, 48)).logits
        model.classifier.bias.sub_(logits.mean(0))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    StudentMeta("3class", list(THREE_CLASS.classes), list(scfg.item_fields), 48).save(out)
    return out
