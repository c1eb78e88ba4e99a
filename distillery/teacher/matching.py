"""Which words of a query an item's text contains: the evidence the rationale writer states and the teacher's
match line shows.

A query word (stop words and one-character words left out) is *met* when its stem occurs anywhere in the item's
fields, else *missed*::

    met, missed = needs(pair)      # (["gym", "guomao"], [])
    match_line(pair)               # "Query words in the item: gym, guomao. Not in the item: none."
"""

from __future__ import annotations

import re

from distillery.data.schema import ITEM_FIELDS, Pair

WORD = re.compile(r"[a-z0-9]+(?:[.'][a-z0-9]+)*")
STOPWORDS = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "into", "is", "it", "its", "of", "on",
    "or", "the", "to", "with", "without", "who", "what", "which", "this", "that", "my", "me", "i", "you", "your",
    "our", "we", "he", "she", "they", "them", "his", "her", "their", "not", "no", "yes", "do", "does", "can",
    "will"])


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def stem(w: str) -> str:
    return w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w


def needs(pair: Pair) -> tuple[list[str], list[str]]:
    """(met, missed) words of the query, in query order, judged against every item field."""
    item_stems = {stem(w) for w in words(" ".join(str(getattr(pair, f) or "") for f in ITEM_FIELDS))}
    met: list[str] = []
    missed: list[str] = []
    for w in dict.fromkeys(words(pair.query)):
        if w in STOPWORDS or len(w) < 2:
            continue
        (met if stem(w) in item_stems else missed).append(w)
    return met, missed


def match_line(pair: Pair) -> str:
    """One line for the teacher's prompt: the query words the item's fields contain and those they lack.  The
    teacher sees it, the student never does: a judge that has read the whole item (description included), which a
    reasoning LLM does in its head and a 135M one cannot be trusted to."""
    met, missed = needs(pair)
    return f"Query words in the item: {', '.join(met) or 'none'}. Not in the item: {', '.join(missed) or 'none'}."
