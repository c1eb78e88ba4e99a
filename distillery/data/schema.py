"""The canonical query–item pair and the label sets.

Every loader produces :class:`Pair` records; every later stage (teacher prompts, annotation, student
inputs) reads only these fields.  Labels are kept in the source's own vocabulary (``Substitute``,
``Partial``…) and mapped to class indices by a :class:`LabelSet` at the point of use, so one file
serves both the 3-class and the 4-class set.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ITEM_FIELDS = ("title", "brand", "color", "attributes", "bullet_points", "description")
LABEL_SOURCES = ("human", "teacher")


class DataError(ValueError):
    """Bad input data; the message names the file, line and field."""


@dataclass
class Pair:
    """One query–item pair."""

    query_id: str
    query: str
    item_id: str
    title: str = ""
    brand: str = ""
    color: str = ""
    attributes: str = ""
    bullet_points: str = ""
    description: str = ""
    label: str | None = None
    label_source: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def item_text(self, fields: list[str] | tuple[str, ...]) -> str:
        """The item's fields joined in order, empty ones left out (``title | brand | color``)."""
        parts = [str(getattr(self, f)).strip() for f in fields]
        return " | ".join(p for p in parts if p)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Pair:
        return cls(**obj)


@dataclass(frozen=True)
class LabelSet:
    """An ordered set of class names and the source labels that map onto each."""

    name: str
    classes: tuple[str, ...]
    aliases: dict[str, str]

    def index(self, label: str) -> int:
        """Class index of a source label; raises ``KeyError`` for a label outside the set."""
        canonical = self.aliases.get(label.strip().lower())
        if canonical is None:
            raise KeyError(label)
        return self.classes.index(canonical)

    def knows(self, label: str) -> bool:
        return label.strip().lower() in self.aliases

    @property
    def num_classes(self) -> int:
        return len(self.classes)


THREE_CLASS = LabelSet(
    "3class",
    ("Exact", "Partial", "Irrelevant"),
    {
        "exact": "Exact", "e": "Exact",
        "partial": "Partial", "substitute": "Partial", "s": "Partial", "complement": "Partial", "c": "Partial",
        "irrelevant": "Irrelevant", "i": "Irrelevant",
    },
)
FOUR_CLASS = LabelSet(
    "4class",
    ("Exact", "Substitute", "Complement", "Irrelevant"),
    {
        "exact": "Exact", "e": "Exact",
        "substitute": "Substitute", "s": "Substitute",
        "complement": "Complement", "c": "Complement",
        "irrelevant": "Irrelevant", "i": "Irrelevant",
    },
)
LABEL_SETS = {ls.name: ls for ls in (THREE_CLASS, FOUR_CLASS)}


def get_label_set(name: str) -> LabelSet:
    try:
        return LABEL_SETS[name]
    except KeyError:
        raise DataError(f"unknown label set {name!r} (known: {', '.join(LABEL_SETS)})") from None


def label_indices(pairs: list[Pair], label_set: LabelSet, source: str = "data") -> list[int]:
    """Class indices of labelled pairs; names the first pair whose label the set does not know."""
    out = []
    for i, p in enumerate(pairs):
        if p.label is None:
            raise DataError(f"{source}: pair {i} ({p.query_id}/{p.item_id}) has no label")
        if not label_set.knows(p.label):
            raise DataError(
                f"{source}: pair {i} ({p.query_id}/{p.item_id}) field 'label': {p.label!r} is not in the "
                f"{label_set.name} label set {list(label_set.classes)}"
            )
        out.append(label_set.index(p.label))
    return out


def write_jsonl(pairs: list[Pair], path: str | Path) -> None:
    """Write pairs one JSON object per line, atomically (a reader never sees half a file)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for p in pairs:
            fh.write(json.dumps(p.to_json(), ensure_ascii=False) + "\n")
    tmp.replace(path)
