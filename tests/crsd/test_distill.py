"""Distillation end to end on the tiny profile: annotations → every method → a plain classifier that
``distillery evaluate`` reloads with the same outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distillery.annotation import annotate_shard, merge_shards, select_pairs
from distillery.cli import main
from distillery.config import load_config
from distillery.data.schema import THREE_CLASS, DataError, label_indices, write_jsonl
from distillery.data.splits import split_pairs
from distillery.data.synthetic import generate
from distillery.evaluate import compute_metrics
from distillery.student.crsd import crsd_loss_fn
from distillery.student.distill import build_examples, save_student
from distillery.student.model import StudentMeta, build_student, predict_logits, softmax
from distillery.student.predictor import Classifier
from distillery.student.trainer import fit
from tests.annotate.test_shards import FakeTeacher

DATA = "synthetic:240,seed=2"


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    """The log pairs of DATA annotated by the fake teacher, through the real shard and merge code."""
    root = tmp_path_factory.mktemp("ann")
    cfg = load_config("tiny")
    logs = select_pairs(generate(240, seed=2), cfg)
    for k in range(2):
        annotate_shard(FakeTeacher(), logs, k, 2, root / "shards", cfg, data_name=DATA)
    merge_shards(root / "shards", root / "annotations.jsonl")
    return root


def test_examples_of_each_method(annotated):
    from distillery.annotation import load_annotations

    cfg = load_config("tiny")
    splits = split_pairs(generate(240, seed=2), cfg.data)
    ann = load_annotations(annotated / "annotations.jsonl")
    human, _ = build_examples(splits, ann, "human", THREE_CLASS, cfg)
    assert len(human) == len(splits.seed)
    crsd, counts = build_examples(splits, ann, "crsd", THREE_CLASS, cfg)
    assert counts["seed"] == len(splits.seed) and counts["logs_unusable"] > 0  # parse failures left out
    assert counts["logs"] + counts["logs_unusable"] == len(splits.logs)
    teacher_rows = [e for e in crsd if e.extra["source"] == "teacher"]
    assert all(e.extra["reasoning"] and e.soft is not None for e in teacher_rows)
    cfg.distill.log_fraction = 0.5
    half, _ = build_examples(splits, ann, "hard", THREE_CLASS, cfg)
    assert len(splits.seed) < len(half) < len(crsd)


def test_saved_crsd_student_gives_the_same_outputs_in_evaluate(tmp_path, annotated):
    from distillery.annotation import load_annotations

    cfg = load_config("tiny", overrides={"train": {"max_steps": 4}})
    pairs = generate(240, seed=2)
    splits = split_pairs(pairs, cfg.data)
    examples, _ = build_examples(splits, load_annotations(annotated / "annotations.jsonl"), "crsd", THREE_CLASS,
                                 cfg)
    tokenizer, model = build_student(cfg.student, THREE_CLASS, seed=0)
    fit(model, tokenizer, examples, splits.val, THREE_CLASS, cfg.student, cfg.train,
        crsd_loss_fn(tokenizer, cfg.student, cfg.distill, None))
    in_memory = predict_logits(model, tokenizer, splits.test, cfg.student.item_fields, cfg.student.max_length)
    save_student(model, tokenizer, tmp_path / "model", StudentMeta(
        "3class", list(THREE_CLASS.classes), cfg.student.item_fields, cfg.student.max_length, method="crsd"))
    assert not any("reasoning" in f.name for f in (tmp_path / "model").iterdir())
    np.testing.assert_allclose(Classifier(tmp_path / "model").logits(splits.test), in_memory, atol=1e-5)
    write_jsonl(splits.test, tmp_path / "test.jsonl")
    assert main(["evaluate", "--model", str(tmp_path / "model"), "--data", f"jsonl:{tmp_path / 'test.jsonl'}",
                 "--out", str(tmp_path / "eval.json"), "--profile", "tiny"]) == 0
    got = json.loads((tmp_path / "eval.json").read_text())
    want = compute_metrics(label_indices(splits.test, THREE_CLASS), in_memory.argmax(1), THREE_CLASS.classes,
                           softmax(in_memory))
    assert got["macro_f1"] == pytest.approx(want["macro_f1"]) and got["confusion"] == want["confusion"]


@pytest.mark.parametrize("method", ["crsd", "soft", "human"])
def test_distill_command_writes_model_report_and_metrics(tmp_path, annotated, method):
    out = tmp_path / method
    rc = main(["distill", "--annotations", str(annotated / "annotations.jsonl"), "--data", DATA, "--method", method,
               "--out", str(out), "--profile", "tiny", "--set", "train.max_steps=6", "--set", "train.epochs=1"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == method and 0.0 <= metrics["test"]["macro_f1"] <= 1.0
    assert (out / "report.md").exists() and (out / "training_curves.png").stat().st_size > 1000
    assert StudentMeta.load(out / "model").method == method
    if method != "human":
        assert metrics["teacher_on_logs"]["n"] > 0


def test_distill_without_annotations_is_a_clear_error(tmp_path, capsys):
    assert main(["distill", "--data", DATA, "--method", "crsd", "--out", str(tmp_path), "--profile", "tiny"]) == 2
    assert "--annotations is required" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query_id": "q", "item_id": "i", "label": "Exact", "label_probs": [1], "reasoning": ""}\n{oops\n')
    assert main(["distill", "--annotations", str(bad), "--data", DATA, "--out", str(tmp_path), "--profile",
                 "tiny"]) == 2
    assert "bad.jsonl:2: malformed record" in capsys.readouterr().err


def test_a_teacher_with_no_usable_label_falls_back_to_seed_labels_and_says_so(annotated):
    """A random-init teacher writes no parsable label: the pipeline's distillation still trains (on the seed
    labels) and flags it, instead of failing the run on model output."""
    from distillery.annotation import load_annotations

    cfg = load_config("tiny")
    splits = split_pairs(generate(240, seed=2), cfg.data)
    garbage = {k: {**rec, "label": None, "parse_error": "no Label: line"}
               for k, rec in load_annotations(annotated / "annotations.jsonl").items()}
    examples, counts = build_examples(splits, garbage, "crsd", THREE_CLASS, cfg)
    assert counts["teacher_fallback"] == 1 and counts["logs"] == 0 and counts["logs_unusable"] > 0
    assert len(examples) == len(splits.seed) and {e.extra["source"] for e in examples} == {"human"}
    cfg.distill.include_seed = False
    with pytest.raises(DataError, match="no training example"):
        build_examples(splits, garbage, "crsd", THREE_CLASS, cfg)


def test_labels_read_only_at_a_forced_position_are_left_out_unless_asked_for(annotated):
    """Every annotation has a label by construction; by default CRSD distils only those the answer's own text
    argued for (``distill.drop_parse_errors``), and with the setting off it distils them all."""
    from distillery.annotation import load_annotations

    cfg = load_config("tiny")
    splits = split_pairs(generate(240, seed=2), cfg.data)
    ann = load_annotations(annotated / "annotations.jsonl")
    forced = {k: {**rec, "label": "Exact", "parse_error": None, "disagreement": "no_label_line"}
              for k, rec in ann.items()}
    _, kept = build_examples(splits, forced, "crsd", THREE_CLASS, cfg)
    assert kept["logs"] == 0 and kept["teacher_fallback"] == 1
    argued = {k: {**rec, "disagreement": "other_label"} for k, rec in forced.items()}
    _, other = build_examples(splits, argued, "crsd", THREE_CLASS, cfg)
    assert other["logs"] == len(forced)  # the text named a label, another one: kept, counted as disagreement
    cfg.distill.drop_parse_errors = False
    _, everything = build_examples(splits, forced, "crsd", THREE_CLASS, cfg)
    assert everything["logs"] == len(forced) and everything.get("teacher_fallback", 0) == 0


def test_confidence_aware_distillation_leaves_out_the_teachers_unsure_labels(annotated):
    """``distill.min_confidence``: a teacher label whose own probability is below it is not distilled; a record
    without a distribution cannot show its confidence: an error while the setting is on, distilled when it is off."""
    from distillery.annotation import load_annotations

    cfg = load_config("tiny")
    splits = split_pairs(generate(240, seed=2), cfg.data)
    ann = load_annotations(annotated / "annotations.jsonl")
    keys = sorted(ann)
    graded = {k: {**ann[k], "label": "Exact", "parse_error": None, "disagreement": None,
                  "label_probs": [0.9, 0.05, 0.05] if i % 2 else [0.4, 0.3, 0.3]} for i, k in enumerate(keys)}
    sure = sum(1 for i in range(len(keys)) if i % 2)
    _, everything = build_examples(splits, graded, "hard", THREE_CLASS, cfg)
    assert everything["logs"] == len(keys)
    cfg.distill.min_confidence = 0.5
    examples, kept = build_examples(splits, graded, "hard", THREE_CLASS, cfg)
    assert kept["logs"] == sure and kept["logs_unusable"] == len(keys) - sure
    assert all(e.soft[0] == pytest.approx(0.9) for e in examples if e.extra.get("source") == "teacher")
    no_probs = {k: {**rec, "label_probs": None} for k, rec in graded.items()}
    with pytest.raises(DataError, match="min_confidence"):
        build_examples(splits, no_probs, "hard", THREE_CLASS, cfg)
    cfg.distill.min_confidence = 0.0
    assert build_examples(splits, no_probs, "hard", THREE_CLASS, cfg)[1]["logs"] == len(keys)
