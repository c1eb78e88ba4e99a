"""Reasoning for SFT, offline: an attribute-grounded rationale that explains the gold label from the fields.

The writer lists which words of the query the item's fields contain and which they lack (the teacher prompt's
match line, :mod:`distillery.teacher.matching`), then concludes with the gold label.  Every word it names comes
from the query, so the rationale is grounded by construction; the label line always agrees with the conclusion.
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


def _join(ws: list[str]) -> str:
    return ws[0] if len(ws) == 1 else ", ".join(ws[:-1]) + " and " + ws[-1]


def write_rationale(pair: Pair, label: str) -> str:
    """One sentence of grounded reasoning ending in the conclusion of ``label`` (a class name).

    It restates the prompt's match line whole, in its own words and order: every word the item has, every word
    it lacks, and "lacks nothing" when it lacks none.  Copying that line is easy for a small model, and the
    conclusion then follows from what was just written.  The earlier writer quoted at most three words of
    each side, so "lacks nothing" never appeared and the teacher had to look back at the prompt to tell Exact
    from Partial: it called a fifth to a third of the pairs that lack no query word Partial (docs/benchmarks.md,
    session 8)."""
    met, missed = needs(pair)
    # No title quote, no quotation marks, no word kinds: every token here is one the teacher must learn to
    # generate (and the annotator to pay for) before it reaches the label.
    has = f"has {_join(met)}" if met else "has none of the query words"
    if not missed:
        sentence = f"The item {has} and lacks nothing"
    elif label == "Exact":  # a need the fields do not spell out (a sub-type, a label the seed data disputes)
        sentence = f"The item {has} and does not state {_join(missed)}"
    else:
        sentence = f"The item {has} but lacks {_join(missed)}"
    return f"{sentence}, {CONCLUSION.get(label, f'so it is {label}')}."


def gold_answer(pair: Pair, label_set: LabelSet) -> str:
    """The SFT target: rationale plus label line, for a pair with a gold label."""
    if pair.label is None:
        raise ValueError(f"pair {pair.query_id}/{pair.item_id} has no gold label to explain")
    label = label_set.classes[label_set.index(pair.label)]
    return format_answer(write_rationale(pair, label), label)
