"""Shared builders of the A/B tests."""

from __future__ import annotations

from distillery.abtest.arms import SplitConfig, split_from_dict
from tests.students import make_student as make_tiny_student


def two_arm(weights: tuple[float, float] = (50, 50), salt: str = "s1") -> SplitConfig:
    return split_from_dict({"experiment": "exp", "salt": salt, "champion": "champion", "arms": [
        {"name": "champion", "model": "relevance", "version": "1", "weight": weights[0]},
        {"name": "challenger", "model": "relevance", "version": "2", "weight": weights[1]}]})


def make_student(out, seed: int):
    """A random-init tiny student (tests/students.py) centred on marketplace-like pairs."""
    queries = ["thai massage open late", "cheap sushi", "dog grooming", "teeth whitening weekend hours"]
    items = ["Golden Thai Massage Spa | spa", "Lucky Sushi Kitchen | restaurant", "Paws Pet Salon | pet grooming",
             "Smile Clinic | dental clinic"]
    return make_tiny_student(out, seed, queries, items)
