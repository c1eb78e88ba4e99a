"""Reasoning for SFT, offline: an attribute-grounded rationale that explains the gold label from the fields.

The writer lists which needs of the query (product words, brand, colour, size…) the item's fields meet
and which they miss, then concludes with the gold label.  Every word it quotes comes from the query or the
item, so the rationale is grounded by construction; the label line always agrees with the conclusion.
(The paper draws reasoning from a strong general LLM: :mod:`distillery.teacher.endpoint` does that for users
who have one.)
"""

from __future__ import annotations

from distillery.data.schema import LabelSet, Pair
from distillery.teacher.matching import needs
from distillery.teacher.prompt import format_answer

CONCLUSION = {
    "Exact": "so it meets the query",
    "Partial": "so it meets the query only in part",
    "Substitute": "so it could serve instead of what is asked for",
    "Complement": "so it goes with what is asked for rather than being it",
    "Irrelevant": "so it is not what the query asks for",
}


def _describe(items: list[str], limit: int = 3) -> str:
    # The words only, as the prompt's match line lists them: "the brand 'x'" made a small teacher tag words
    # with the wrong kind, and cost tokens.
    parts = [f"'{w}'" for w in items[:limit]]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def write_rationale(pair: Pair, label: str) -> str:
    """One or two sentences of grounded reasoning ending in the conclusion of ``label`` (a class name)."""
    met, missed = needs(pair)
    # No title quote: the prompt shows the item, and every token here is one the teacher must learn to generate
    # (and the annotator to pay for) before it reaches the label.
    sentence = "The item"
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
