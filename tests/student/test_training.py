from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from distillery.cli import main
from distillery.config import load_config
from distillery.data import THREE_CLASS, load_pairs, split_pairs
from distillery.data.synthetic import generate
from distillery.student.lexical import LexicalModel
from distillery.student.model import build_student, predict_logits
from distillery.student.predictor import Classifier
from distillery.student.trainer import class_weights, examples_from_pairs, fit, weighted_ce


def test_finetuning_a_tiny_model_changes_parameters_and_lowers_the_loss():
    cfg = load_config("tiny", overrides={"train": {"epochs": 4, "patience": 10}})
    splits = split_pairs(generate(400, seed=0), cfg.data)
    tokenizer, model = build_student(cfg.student, THREE_CLASS, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    examples = examples_from_pairs(splits.train, THREE_CLASS, cfg.student.item_fields)
    result = fit(model, tokenizer, examples, splits.val, THREE_CLASS, cfg.student, cfg.train,
                 weighted_ce(None), desc="test")
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) > 0.9 * len(before)
    losses = [h["train_loss"] for h in result.history]
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    assert result.examples_per_second > 0


def test_similarity_targets_are_the_starting_bi_encoder_cosine():
    from distillery.student.similarity import mean_pooled, similarity_targets

    cfg = load_config("tiny")
    tokenizer, model = build_student(cfg.student, THREE_CLASS, seed=0)
    got = similarity_targets(model, tokenizer, ["red dress", "usb cable"], ["red dress", "garden hose"], 32)
    assert model.training  # left as it was found
    model.eval()  # no dropout, as inside similarity_targets
    q = mean_pooled(model.base_model, tokenizer, ["red dress", "usb cable"], 32, 8)
    assert got[0].item() == pytest.approx(1.0, abs=1e-5)  # a text and itself
    assert got[1].item() == pytest.approx(float(q[1] @ mean_pooled(model.base_model, tokenizer, ["garden hose"], 32,
                                                                     8)[0]), abs=1e-5)


def test_similarity_aux_trains_a_head_that_is_never_saved(tmp_path):
    """train.similarity_aux adds a term to the loss; the saved student stays a plain classifier."""
    from distillery.student.trainer import SimilarityAux

    cfg = load_config("tiny", overrides={"train": {"epochs": 1, "similarity_aux": 5.0, "max_steps": 6}})
    splits = split_pairs(generate(200, seed=0), cfg.data)
    tokenizer, model = build_student(cfg.student, THREE_CLASS, seed=0)
    examples = examples_from_pairs(splits.train, THREE_CLASS, cfg.student.item_fields)
    aux = SimilarityAux(model, tokenizer, examples, cfg.student, cfg.train)
    batch = examples[:4]
    from distillery.student.model import encode

    model(**encode(tokenizer, [e.query for e in batch], [e.item for e in batch], 32))
    term = aux.loss(batch)
    assert term.item() > 0 and term.requires_grad
    with pytest.raises(RuntimeError, match="expected the batch's standard view first"):
        aux.loss(batch)  # the capture is consumed: a step without a forward pass is an error
    aux.capture.close()
    keys = set(model.state_dict())
    fit(model, tokenizer, examples, splits.val, THREE_CLASS, cfg.student, cfg.train, weighted_ce(None), desc="aux")
    assert set(model.state_dict()) == keys
    assert not any(model.base_model.pooler._forward_hooks.values())  # the hook is gone after fit


def test_class_weights_are_inverse_frequency():
    w = class_weights([0, 0, 0, 1], 3)
    assert w[1] / w[0] == pytest.approx(3.0)
    assert w[2] == pytest.approx(w.mean() * 3 - w[0] - w[1])


def test_query_is_never_truncated_before_the_item(tiny_config):
    tokenizer, _ = build_student(tiny_config.student, THREE_CLASS)
    from distillery.student.model import encode

    long_item = "word " * 400
    batch = encode(tokenizer, ["red running shoes for women"], [long_item], 32)
    ids = batch["input_ids"][0].tolist()
    assert len(ids) == 32
    text = tokenizer.decode(ids)
    assert "red running shoes for women" in text


def test_lexical_model_round_trip(tmp_path):
    pairs = generate(300, seed=4)
    model = LexicalModel(load_config("demo").lexical, list(THREE_CLASS.classes)).fit(pairs, THREE_CLASS)
    model.save(tmp_path)
    again = LexicalModel.load(tmp_path)
    np.testing.assert_allclose(model.predict_proba(pairs), again.predict_proba(pairs))


@pytest.mark.slow
def test_finetune_then_evaluate_cli_keys_and_same_outputs(tmp_path):
    out = tmp_path / "ft"
    assert main(["finetune", "--profile", "tiny", "--data", "synthetic:300,seed=5", "--out", str(out)]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert {"val", "test", "history", "split"} <= set(summary)
    assert (out / "report.md").exists() and (out / "confusion_test.png").exists()
    assert (out / "training_curves.png").exists()
    js = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(out / "model"), "--data", "synthetic:120,seed=9",
                 "--out", str(js)]) == 0
    metrics = json.loads(js.read_text())
    assert {"macro_f1", "accuracy", "per_class", "n", "confusion"} <= set(metrics)
    assert metrics["n"] == 120 and js.with_suffix(".png").exists()
    # the saved directory reproduces the in-process predictions of a fresh load
    pairs = load_pairs("synthetic:50,seed=9")
    clf = Classifier(out / "model")
    np.testing.assert_allclose(
        clf.logits(pairs), predict_logits(clf.model, clf.tokenizer, pairs, clf.meta.item_fields,
                                          clf.meta.max_length, batch_size=7), atol=1e-5)


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["finetune", "--profile", "tiny", "--data", "synthetic:300", "--out", str(tmp_path),
                 "--set", "train.lr=9"]) == 2
    assert "train.lr=9.0: must be in (0.0, 1.0]" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tmp_path / "none"), "--data", "synthetic:10",
                 "--out", str(tmp_path / "x.json")]) == 2
    assert "no such directory" in capsys.readouterr().err
