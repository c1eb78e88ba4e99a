"""The teacher's prompt and its one answer format, with a parser that reports failures instead of guessing.

Answer format (one reasoning line, one label line, nothing else)::

    Reasoning: The query asks for a red nike running shoe; the item is a nike running shoe in blue, ...
    Label: Partial

The prompt is the chat template of the model (a plain ``System/User/Assistant`` layout when it has none)
with the query and the item fields; only the item text is truncated to fit ``max_prompt_tokens``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from transformers import PreTrainedTokenizerBase

from distillery.data.schema import LabelSet, Pair, get_label_set
from distillery.teacher.matching import match_line

if TYPE_CHECKING:
    from distillery.teacher.model import TeacherMeta

PROMPT_VERSION = "v1"
PROMPT_SLACK = 4
"""Tokens a built prompt may exceed ``max_prompt_tokens`` by (the item is cut by a count of its own tokens,
which re-tokenised inside the prompt can differ by one); the trainers' ``max_length`` leaves 8 of room.  A
prompt over that (a very long query: only the item is cut) leaves a training step's completion no room."""
FIELD_NAMES = {"title": "Title", "brand": "Brand", "color": "Colour", "attributes": "Attributes",
               "bullet_points": "Bullet points", "description": "Description"}

_DEFINITIONS = {
    "Exact": "meets every need",
    "Partial": "related but misses a need",
    "Substitute": "misses a need but could serve instead",
    "Complement": "used together with what is asked for",
    "Irrelevant": "not what is asked for",
}

_LABEL_RE = re.compile(r"^\s*label\s*:\s*(.*?)\s*$", re.IGNORECASE | re.MULTILINE)
# Within its line: an empty ``Reasoning:`` line must not take the ``Label:`` line below it as its text.
_REASON_RE = re.compile(r"^[ \t]*reasoning[ \t]*:[ \t]*(.*)$", re.IGNORECASE | re.MULTILINE)


def system_prompt(label_set: LabelSet) -> str:
    # Kept short: every prompt carries it, and on a CPU each prompt token costs as much as a generated one.
    defs = "; ".join(f"{c} = {_DEFINITIONS.get(c, c)}" for c in label_set.classes)
    return (f"Judge how relevant the item is to the shopping query. {defs}.\n"
            f"Answer in two lines:\nReasoning: <which needs of the query the item meets or misses>\n"
            f"Label: <{'|'.join(label_set.classes)}>")


def item_block(pair: Pair, fields: list[str], max_field_chars: int) -> str:
    """The item as ``Field: value`` lines, each value cut to ``max_field_chars``; empty fields left out."""
    lines = []
    for f in fields:
        value = " ".join(str(getattr(pair, f) or "").split())
        if value:
            lines.append(f"{FIELD_NAMES[f]}: {value[:max_field_chars]}")
    return "\n".join(lines)


def format_answer(reasoning: str, label: str) -> str:
    """The canonical answer text (SFT targets and DPO completions use it)."""
    return f"Reasoning: {' '.join(clean_text(reasoning).split())}\nLabel: {label}"


# C0/C1 control characters (tab, newline and carriage return kept) and lone surrogates: what an undecodable
# byte (``surrogateescape``), a JSON ``\udc80`` escape or a random-init model's output can put in a string.
# Fast tokenizers refuse a lone surrogate (TypeError) and ``str.encode`` cannot write one as UTF-8.
_UNSAFE_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def clean_text(text: object) -> str:
    """Model output made safe to tokenise and to write as UTF-8 JSON: ``None`` → ``""``, any other non-string
    → ``str``, control characters and lone surrogates removed (the rest, ``\ufffd`` included, kept)."""
    s = "" if text is None else text if isinstance(text, str) else str(text)
    return _UNSAFE_CHARS.sub("", s)


def split_label_line(text: str) -> tuple[str, str]:
    """(the reasoning part, the last ``Label:`` line and whatever follows it); ``(text, "")`` without one."""
    found = list(_LABEL_RE.finditer(text))
    if not found:
        return text, ""
    start = found[-1].start()
    while start < len(text) and text[start] in "\r\n":  # ``^\s*`` may start at an empty line above
        start += 1
    return text[:start], text[start:]


def _ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def answer_ids(tokenizer: PreTrainedTokenizerBase, text: str, budget: int) -> tuple[list[int], bool]:
    """Token ids (no special tokens) of an answer in at most ``budget`` tokens, and whether it was cut.

    A longer answer keeps the head of its reasoning and its label line (the last ``Label:`` line and what
    follows, at most half the budget): the part a judge of the answer needs, whatever the model wrote before.
    """
    budget = max(0, budget)
    ids = _ids(tokenizer, text)
    if len(ids) <= budget:
        return ids, False
    head, tail = split_label_line(text)
    tail_ids = _ids(tokenizer, tail)[: budget // 2]
    return _ids(tokenizer, head)[: budget - len(tail_ids)] + tail_ids, True


def fit_answer(tokenizer: PreTrainedTokenizerBase, text: str, max_tokens: int) -> tuple[str, bool]:
    """The answer text in at most ``max_tokens`` tokens, and whether it was cut: the reasoning loses its tail
    (at a word boundary), the label line stays whole (up to half the budget).  For SFT targets and DPO
    completions, where a trainer's own truncation would cut the label line off instead."""
    if len(_ids(tokenizer, text)) <= max_tokens:
        return text, False
    head, tail = split_label_line(text)
    tail = tail.strip()
    tail_ids = _ids(tokenizer, tail)
    if len(tail_ids) > max_tokens // 2:
        tail = str(tokenizer.decode(tail_ids[: max_tokens // 2], skip_special_tokens=True)).strip()
    head_ids = _ids(tokenizer, head)
    budget = max_tokens - len(_ids(tokenizer, tail)) - 1
    out = tail
    for _ in range(8):  # re-tokenising the joined text can differ by a token or two at the seam
        cut = str(tokenizer.decode(head_ids[: max(0, budget)], skip_special_tokens=True))
        if budget < len(head_ids) and " " in cut.strip():
            cut = cut.rstrip().rsplit(" ", 1)[0]  # no half word
        out = f"{cut.rstrip()}\n{tail}" if cut.strip() and tail else (cut.rstrip() or tail)
        over = len(_ids(tokenizer, out)) - max_tokens
        if over <= 0:
            return out, True
        budget -= max(1, over)
    return str(tokenizer.decode(_ids(tokenizer, out)[:max_tokens], skip_special_tokens=True)), True


def _render(tok: PreTrainedTokenizerBase, system: str, user: str) -> str:
    if getattr(tok, "chat_template", None):
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return str(tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
    return f"System: {system}\n\nUser: {user}\n\nAssistant: "


@dataclass
class PromptBuilder:
    """Builds prompts for one tokenizer and label set within a token budget."""

    tokenizer: PreTrainedTokenizerBase
    label_set: LabelSet
    item_fields: list[str]
    max_prompt_tokens: int
    max_field_chars: int
    match_hint: bool = False
    """Show :func:`distillery.teacher.matching.match_line` between the query and the item (never cut: only the
    item is truncated to fit)."""

    @classmethod
    def from_meta(cls, tokenizer: PreTrainedTokenizerBase, meta: TeacherMeta) -> PromptBuilder:
        """The prompt builder a teacher directory was trained with (its label set, fields, budgets, match line)."""
        return cls(tokenizer, get_label_set(meta.label_set), list(meta.item_fields), meta.max_prompt_tokens,
                   meta.max_field_chars, meta.match_hint)

    def _user(self, pair: Pair, item: str) -> str:
        hint = f"\n{match_line(pair)}" if self.match_hint else ""
        return f"Query: {' '.join(pair.query.split())}{hint}\nItem:\n{item}"

    def shared_prefix(self) -> str:
        """The text every prompt starts with, cut after its last special token so that it tokenises the
        same alone as inside a prompt (empty when the template has no such point); the decoder caches it."""
        system = system_prompt(self.label_set)
        a, b = (_render(self.tokenizer, system, u) for u in ("Query: a", "Query: b"))
        common = a[: next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), len(a))]
        ends = [common.rfind(t) + len(t) for t in self.tokenizer.all_special_tokens if t and t in common]
        prefix = common[: max(ends)] if ends else ""
        whole = self.tokenizer(a, add_special_tokens=False)["input_ids"]
        parts = self.tokenizer([prefix, a[len(prefix):]], add_special_tokens=False)["input_ids"]
        return prefix if prefix and parts[0] + parts[1] == whole else ""

    def build(self, pairs: list[Pair]) -> list[str]:
        """Prompt texts; items are cut (by tokens, at the end) so that every prompt fits the budget."""
        system = system_prompt(self.label_set)
        items = [item_block(p, self.item_fields, self.max_field_chars) for p in pairs]
        shells = [_render(self.tokenizer, system, self._user(p, "")) for p in pairs]
        shell_len = [len(ids) for ids in self.tokenizer(shells, add_special_tokens=False)["input_ids"]]
        item_ids = self.tokenizer(items, add_special_tokens=False)["input_ids"]
        out = []
        for pair, item, ids, used in zip(pairs, items, item_ids, shell_len, strict=True):
            budget = max(0, self.max_prompt_tokens - used - 1)
            if len(ids) > budget:  # the query stays whole; the item loses its tail
                item = str(self.tokenizer.decode(ids[:budget], skip_special_tokens=True))
            out.append(_render(self.tokenizer, system, self._user(pair, item)))
        return out


@dataclass
class ParsedAnswer:
    label: str | None
    reasoning: str
    error: str | None


PARSE_ERROR_CODES = ("no_label_line", "unknown_label", "conflicting_labels")


def parse_error_code(error: str) -> str:
    """The reason code of a :func:`parse_answer` error message, for counting (``other`` if none matches)."""
    for code, start in zip(PARSE_ERROR_CODES, ("no 'Label:' line", "unknown label", "conflicting labels"),
                           strict=True):
        if error.startswith(start):
            return code
    return "other"


def parse_answer(text: str, label_set: LabelSet) -> ParsedAnswer:
    """Read ``Reasoning:`` and ``Label:`` from an answer; a missing, unknown or conflicting label is an error.

    The label word must be one of the set's class names (case-insensitive, trailing punctuation allowed);
    nothing is inferred from free text.
    """
    reasons = _REASON_RE.findall(text)
    reasoning = reasons[0].strip() if reasons else ""
    found = [m.strip().strip(".!*'\"`").strip() for m in _LABEL_RE.findall(text)]
    if not found:
        return ParsedAnswer(None, reasoning, "no 'Label:' line")
    names = {c.lower(): c for c in label_set.classes}
    labels = []
    for word in found:
        if word.lower() not in names:
            return ParsedAnswer(None, reasoning, f"unknown label {word[:40]!r} (expected one of "
                                                 f"{', '.join(label_set.classes)})")
        labels.append(names[word.lower()])
    if len(set(labels)) > 1:
        return ParsedAnswer(None, reasoning, f"conflicting labels {sorted(set(labels))}")
    return ParsedAnswer(labels[0], reasoning, None)
