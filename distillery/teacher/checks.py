"""Programmatic checks of an answer on each reward dimension (the reward model's training targets).

Dimensions (``distillery.config.REWARD_DIMENSIONS``), each a score in [0, 1]:

- ``label``: the parsed label equals the gold label;
- ``consistency``: the stance of the reasoning (meets / partly / does not meet) agrees with the label;
- ``grounding``: share of the reasoning's content words found in the query or the item;
- ``format``: exactly a ``Reasoning:`` line and a known ``Label:`` line;
- ``concision``: reasoning of 6–45 words, less outside that range.
"""

from __future__ import annotations

import re

from distillery.config import REWARD_DIMENSIONS
from distillery.data.schema import ITEM_FIELDS, LabelSet, Pair
from distillery.teacher.matching import STOPWORDS, stem, words
from distillery.teacher.prompt import parse_answer

# Words any reasoning may use without quoting the query or the item.
SCAFFOLD = STOPWORDS | frozenset(
    ["item", "items", "query", "queries", "has", "have", "lacks", "lack", "missing", "misses", "miss", "so",
    "meets", "meet", "matches", "match", "only", "part", "partly", "brand", "colour", "color", "size", "term",
    "asks", "asked", "ask", "what", "is", "not", "but", "could", "serve", "instead", "goes", "go", "rather", "than",
    "being", "requirement", "requirements", "need", "needs", "product", "search", "label", "reasoning", "exact",
    "partial", "irrelevant", "substitute", "complement", "also", "however", "both", "one", "some", "all", "any",
    "same", "different", "related", "unrelated", "used", "together", "mentions", "mention", "shows", "show", "type",
    "kind", "state", "states", "nothing", "none", "word", "words"])

_STANCE_CUES = (
    ("irrelevant", re.compile(r"\b(not what|irrelevant|unrelated|does not|doesn't|no relation)\b")),
    ("partial", re.compile(r"\b(in part|partly|partial|lacks|misses|but|however|instead|rather than|substitute|"
                           r"complement|goes with)\b")),
    ("exact", re.compile(r"\b(meets the query|meets every|exactly|matches every|is what)\b")),
)


def stance(reasoning: str) -> str | None:
    """``exact``, ``partial`` or ``irrelevant`` as the reasoning argues it (first cue class that fires)."""
    text = reasoning.lower()
    # The conclusion ("…, so it meets the query") outweighs the facts listed before it.
    for part in (text.rsplit(" so ", 1)[-1], text):
        for name, rx in _STANCE_CUES:
            if rx.search(part):
                return name
    return None


def _stance_of(label: str) -> str:
    return {"Exact": "exact", "Irrelevant": "irrelevant"}.get(label, "partial")


def grounding(reasoning: str, pair: Pair) -> float:
    content = [w for w in words(reasoning) if w not in SCAFFOLD]
    if not content:
        return 0.0 if not reasoning.strip() else 1.0
    known = {stem(w) for f in ("query", *ITEM_FIELDS) for w in words(str(getattr(pair, f) or ""))}
    return sum(stem(w) in known for w in content) / len(content)


def concision(reasoning: str) -> float:
    n = len(reasoning.split())
    if n < 6:
        return n / 6
    return 1.0 if n <= 45 else max(0.0, 1.0 - (n - 45) / 45)


def check_answer(pair: Pair, text: str, label_set: LabelSet) -> dict[str, float]:
    """Score one answer text on every dimension; ``label`` needs the pair's gold label (0.5 when absent)."""
    parsed = parse_answer(text, label_set)
    gold = label_set.classes[label_set.index(pair.label)] if pair.label and label_set.knows(pair.label) else None
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    said = stance(parsed.reasoning)
    scores = {
        "label": 0.5 if gold is None else float(parsed.label == gold),
        "consistency": 0.0 if parsed.label is None or said is None else float(_stance_of(parsed.label) == said),
        "grounding": grounding(parsed.reasoning, pair),
        "format": float(parsed.error is None and bool(parsed.reasoning) and len(lines) == 2),
        "concision": concision(parsed.reasoning),
    }
    return {d: scores[d] for d in REWARD_DIMENSIONS}
