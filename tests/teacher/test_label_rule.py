"""Every answer gets a label by construction (argmax at the label position); the text's own label is kept for the
reasoning/label agreement figure (issue #17, item 1)."""

from __future__ import annotations

import pytest

from distillery.annotation.merge import agreement
from distillery.annotation.run import _record
from distillery.config import load_config
from distillery.data import load_pairs
from distillery.data.schema import THREE_CLASS, Pair
from distillery.teacher.evaluation import evaluate_teacher
from distillery.teacher.inference import load_teacher, to_answer

EXACT, PARTIAL, IRRELEVANT = THREE_CLASS.classes
P_EXACT = [0.7, 0.2, 0.1]


@pytest.mark.parametrize(("raw", "probs", "label", "written", "disagreement"), [
    (f"Reasoning: same brand.\nLabel: {EXACT}", P_EXACT, EXACT, EXACT, None),
    (f"Reasoning: other colour.\nLabel: {PARTIAL}", P_EXACT, EXACT, PARTIAL, "other_label"),
    ("Reasoning: odd.\nLabel: Banana", [0.1, 0.1, 0.8], IRRELEVANT, None, "unknown_label"),
    ("Reasoning: the answer never wrote a label line", [0.1, 0.6, 0.3], PARTIAL, None, "no_label_line"),
    (f"Label: {EXACT}\nLabel: {IRRELEVANT}", [0.2, 0.2, 0.6], IRRELEVANT, None, "conflicting_labels"),
])
def test_label_is_the_argmax_whatever_the_text_says(raw: str, probs: list[float], label: str, written: str | None,
                                                      disagreement: str | None) -> None:
    a = to_answer(raw, probs, THREE_CLASS, 10, 5)
    assert (a.label, a.written_label, a.disagreement, a.parse_error) == (label, written, disagreement, None)
    assert a.agrees is (disagreement is None)


def test_without_a_distribution_the_text_decides() -> None:
    """A backend that reads no label distribution keeps the old rule: the parsed text, or a parse failure."""
    ok = to_answer(f"Label: {PARTIAL}", None, THREE_CLASS, 1, 1)
    bad = to_answer("no label here", None, THREE_CLASS, 1, 1)
    assert ok.label == PARTIAL and ok.parse_error is None
    assert bad.label is None and bad.parse_error is not None


def test_records_keep_the_written_label_and_count_disagreement() -> None:
    pair = Pair("q1", "i1", "red shoe", "red shoe", label=None)
    answers = [to_answer(f"Label: {PARTIAL}", P_EXACT, THREE_CLASS, 1, 1),
               to_answer(f"Label: {EXACT}", P_EXACT, THREE_CLASS, 1, 1)]
    recs = [_record(pair, a, {}, {}, THREE_CLASS) for a in answers]
    assert [r["label"] for r in recs] == [EXACT, EXACT] and [r["parse_error"] for r in recs] == [None, None]
    assert recs[0]["written_label"] == PARTIAL and "text_label_disagrees" in recs[0]["issues"]
    assert recs[1]["disagreement"] is None and "text_label_disagrees" not in recs[1]["issues"]
    assert agreement(recs) == 0.5


def test_tiny_teacher_never_fails_to_label() -> None:
    """The random-init tiny teacher writes no valid label line, yet every answer has one of the classes."""
    cfg = load_config("tiny")
    pairs = load_pairs("synthetic:8")
    m = evaluate_teacher(load_teacher("tiny", cfg), pairs, progress=False)
    assert m["parse_failure_rate"] == 0.0
    assert sum(m["predicted_distribution"].values()) == len(pairs)
    assert 0.0 <= m["label_agreement"] <= 1.0 and sum(m["disagreements"].values()) == round(
        len(pairs) * (1 - m["label_agreement"]))
