"""Answer format, parser, prompt budget, rationale writer and programmatic checks (no model weights)."""

from __future__ import annotations

import pytest

from distillery.config import ConfigError, load_config
from distillery.data import FOUR_CLASS, THREE_CLASS, Pair, load_pairs
from distillery.teacher.checks import check_answer, stance
from distillery.teacher.matching import match_line
from distillery.teacher.model import TeacherMeta, smollm2_tokenizer
from distillery.teacher.prompt import PromptBuilder, format_answer, parse_answer
from distillery.teacher.rationale import gold_answer


def test_parse_round_trip_and_failures() -> None:
    ok = parse_answer(format_answer("It is a red  shoe.", "Partial"), THREE_CLASS)
    assert (ok.label, ok.reasoning, ok.error) == ("Partial", "It is a red shoe.", None)
    assert parse_answer("Reasoning: x\nlabel: exact.", THREE_CLASS).label == "Exact"
    assert parse_answer("Reasoning: x\nLabel: Substitute", FOUR_CLASS).label == "Substitute"
    for text, err in [("This shoe is great", "no 'Label:'"), ("Label: Maybe", "unknown label"),
                      ("Label: Exact\nLabel: Irrelevant", "conflicting"),
                      ("Reasoning: x\nLabel: Substitute", "unknown label")]:
        parsed = parse_answer(text, THREE_CLASS)
        assert parsed.label is None and err in (parsed.error or ""), text


def test_prompt_keeps_the_query_whole_and_fits_the_budget() -> None:
    tok = smollm2_tokenizer()
    query = "waterproof hiking boots for women size 8 wide"
    pair = Pair("q", query, "i", title="Boot " * 50, description="long text " * 400)
    builder = PromptBuilder(tok, THREE_CLASS, ["title", "description"], 120, 10_000)
    (prompt,) = builder.build([pair])
    assert f"Query: {query}" in prompt
    assert len(tok(prompt, add_special_tokens=False)["input_ids"]) <= 120
    prefix = builder.shared_prefix()
    assert prefix and prompt.startswith(prefix)
    whole = tok(prompt, add_special_tokens=False)["input_ids"]
    parts = tok([prefix, prompt[len(prefix):]], add_special_tokens=False)["input_ids"]
    assert parts[0] + parts[1] == whole


def test_the_match_line_is_in_the_prompt_and_survives_item_truncation(tmp_path) -> None:
    """``teacher.match_hint``: the query words found in any item field (description included, even where the prompt
    cuts it) and those missing; shown between query and item, so cutting the item never cuts it."""
    pair = Pair("q", "cheap red running shoes size 9", "i", title="Nike running shoe", color="Red",
                description="filler " * 300 + "cheap")
    assert match_line(pair) == "Query words in the item: cheap, red, running, shoes. Not in the item: size."
    tok = smollm2_tokenizer()
    with_line = PromptBuilder(tok, THREE_CLASS, ["title", "description"], 120, 10_000, match_hint=True)
    (prompt,) = with_line.build([pair])
    assert match_line(pair) in prompt and prompt.index(match_line(pair)) < prompt.index("Item:")
    assert len(tok(prompt, add_special_tokens=False)["input_ids"]) <= 120
    assert match_line(pair) not in PromptBuilder(tok, THREE_CLASS, ["title"], 120, 100).build([pair])[0]
    # a teacher directory keeps the setting it was trained with; one written before the setting had none
    meta = TeacherMeta("base", "3class", ["title"], 120, 100, match_hint=True)
    meta.save(tmp_path)
    assert PromptBuilder.from_meta(tok, TeacherMeta.load(tmp_path)).match_hint
    (tmp_path / "teacher.json").write_text('{"base": "b", "label_set": "3class", "item_fields": ["title"], '
                                           '"max_prompt_tokens": 120, "max_field_chars": 100}')
    assert not TeacherMeta.load(tmp_path).match_hint
    # ... and keeps the identity its annotation shards were started under, so they resume
    from distillery.teacher.inference import answer_settings

    tcfg = load_config("tiny").teacher
    assert "match_hint" not in answer_settings(TeacherMeta.load(tmp_path), tcfg)
    assert answer_settings(meta, tcfg)["match_hint"] is True


def test_rationales_are_grounded_consistent_and_well_formed() -> None:
    pairs = load_pairs("synthetic:60")
    for p in pairs:
        answer = gold_answer(p, THREE_CLASS)
        scores = check_answer(p, answer, THREE_CLASS)
        assert scores["label"] == scores["format"] == scores["consistency"] == 1.0, answer
        assert scores["grounding"] >= 0.8, answer
    p = pairs[0]
    wrong = "Exact" if THREE_CLASS.index(p.label or "") != 0 else "Irrelevant"
    bad = check_answer(p, format_answer("Made of unicorn dust and moonlight, so it meets the query.", wrong),
                       THREE_CLASS)
    assert bad["label"] == 0.0 and bad["grounding"] < 0.5
    assert check_answer(p, "great product!!", THREE_CLASS)["format"] == 0.0


def test_rationale_restates_the_whole_match_line() -> None:
    # Every word of each side, in the match line's order, and "lacks nothing" when nothing is lacking: the teacher
    # copies its evidence and concludes from what it just wrote (session 8: the 3-word version lost Exact pairs).
    whole = Pair("q", "cheap barber with online booking guomao", "i", title="Star Barber", attributes="online booking",
                 description="a cheap salon in Guomao", label="Exact")
    assert match_line(whole).endswith("cheap, barber, online, booking, guomao. Not in the item: none.")
    assert gold_answer(whole, THREE_CLASS) == ("Reasoning: The item has cheap, barber, online, booking and guomao and "
                                               "lacks nothing, so it meets the query.\nLabel: Exact")
    part = Pair("q", "dumpling restaurant wangjing open late", "i", title="Noodle restaurant", attributes="Wangjing",
                label="Partial")
    assert gold_answer(part, THREE_CLASS).startswith(
        "Reasoning: The item has restaurant and wangjing but lacks dumpling, open and late, so it meets the query only")
    none = Pair("q", "yoga gym", "i", title="Car wash", label="Irrelevant")
    answer = gold_answer(none, THREE_CLASS)
    assert "has none of the query words but lacks yoga and gym" in answer
    assert check_answer(none, answer, THREE_CLASS)["grounding"] == 1.0


def test_stance_reads_the_conclusion() -> None:
    assert stance("It has 'towels' but lacks 'blue', so it meets the query.") == "exact"
    assert stance("It has 'towels' but lacks 'blue', so it meets the query only in part.") == "partial"
    assert stance("The item is a lamp, so it is not what the query asks for.") == "irrelevant"


def test_teacher_config_validation_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"teacher.dpo.lr"):
        load_config("tiny", overrides={"teacher": {"dpo": {"lr": "3"}}})
    with pytest.raises(ConfigError, match=r"teacher.reward_weights"):
        load_config("tiny", overrides={"teacher": {"reward_weights": "1,2"}})
    with pytest.raises(ConfigError, match=r"teacher.endpoint_base_url"):
        load_config("tiny", overrides={"teacher": {"rationale_source": "endpoint"}})
    cfg = load_config("full", overrides={"teacher": {"dpo": {"epochs": "2"}}})
    assert cfg.teacher.dpo.lr == 5e-5  # a partial override keeps the step's own defaults
