"""Reasoning for SFT, offline: an attribute-grounded rationale that explains the gold label from the fields.

The writer lists which needs of the query (product words, brand, colour, size…) the item's fields meet
and which they miss, then concludes with the gold label.  Every word it quotes comes from the query or the
item, so the rationale is grounded by construction; the label line always agrees with the conclusion.
(The paper draws reasoning from a strong general LLM: :mod:`distillery.teacher.endpoint` does that for users
who have one.)
"""

from __future__ import annotations

import re

from distillery.data.schema import LabelSet, Pair
from distillery.teacher.prompt import format_answer

WORD = re.compile(r"[a-z0-9]+(?:[.'][a-z0-9]+)*")
STOPWORDS = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "into", "is", "it", "its", "of", "on",
    "or", "the", "to", "with", "without", "who", "what", "which", "this", "that", "my", "me", "i", "you", "your",
    "our", "we", "he", "she", "they", "them", "his", "her", "their", "not", "no", "yes", "do", "does", "can",
    "will"])
COLOURS = frozenset(
    ["black", "white", "red", "blue", "green", "yellow", "pink", "purple", "orange", "brown", "grey", "gray",
    "silver", "gold", "beige", "navy", "teal", "ivory", "cream", "maroon", "tan", "khaki", "clear", "rose",
    "multicolor"])
SIZE_RE = re.compile(r"^\d+(?:\.\d+)?(?:x\d+)?(?:in|inch|oz|ml|l|lb|lbs|kg|g|mm|cm|ft|pack|pcs|gb|tb|w|v)?$|"
                     r"^(?:xs|s|m|l|xl|xxl|xxxl|small|medium|large|king|queen|twin|full)$")
CONCLUSION = {
    "Exact": "so it meets the query",
    "Partial": "so it meets the query only in part",
    "Substitute": "so it could serve instead of what is asked for",
    "Complement": "so it goes with what is asked for rather than being it",
    "Irrelevant": "so it is not what the query asks for",
}


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def _stem(w: str) -> str:
    return w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w


def _kind(word: str, brand_words: set[str]) -> str:
    if word in brand_words:
        return "brand"
    if word in COLOURS:
        return "colour"
    if SIZE_RE.match(word):
        return "size"
    return "term"


def needs(pair: Pair) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(met, missed) needs of the query as (kind, word), judged against every item field."""
    item_text = " ".join(str(getattr(pair, f) or "") for f in ("title", "brand", "color", "attributes",
                                                              "bullet_points", "description"))
    item_stems = {_stem(w) for w in words(item_text)}
    brand_words = set(words(pair.brand))
    met: list[tuple[str, str]] = []
    missed: list[tuple[str, str]] = []
    for w in dict.fromkeys(words(pair.query)):
        if w in STOPWORDS or len(w) < 2:
            continue
        (met if _stem(w) in item_stems else missed).append((_kind(w, brand_words), w))
    return met, missed


def _describe(items: list[tuple[str, str]], limit: int = 3) -> str:
    parts = [f"the {kind} '{w}'" if kind != "term" else f"'{w}'" for kind, w in items[:limit]]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def write_rationale(pair: Pair, label: str) -> str:
    """One or two sentences of grounded reasoning ending in the conclusion of ``label`` (a class name)."""
    met, missed = needs(pair)
    title = " ".join(pair.title.split()[:8]) or "the item"
    sentence = f"The item '{title}'"
    if met:
        sentence += f" has {_describe(met)}"
    if missed and label == "Exact":
        sentence += (" and" if met else "") + f" does not state {_describe(missed)}"
    elif missed:
        sentence += (" but lacks " if met else " lacks ") + _describe(missed)
    if not met and not missed:
        sentence += " is compared with the query"
    return f"{sentence}, {CONCLUSION.get(label, f'so it is {label}')}."


def gold_answer(pair: Pair, label_set: LabelSet) -> str:
    """The SFT target: rationale plus label line, for a pair with a gold label."""
    if pair.label is None:
        raise ValueError(f"pair {pair.query_id}/{pair.item_id} has no gold label to explain")
    label = label_set.classes[label_set.index(pair.label)]
    return format_answer(write_rationale(pair, label), label)
