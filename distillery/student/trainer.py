"""Fine-tuning loop shared by the plain baseline and every distillation method.

The loop owns what all methods share — seeding, length-bucketed batches, AdamW with a separate head
learning rate, warm-up and linear decay, clipping, validation macro-F1 each epoch, early stopping on
it, progress bars, keeping the best weights, and the optional bi-encoder similarity auxiliary
(``train.similarity_aux``, see ``distillery.student.similarity``).  A method supplies only
``loss_fn(model, batch)``.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from distillery.config import StudentConfig, TrainConfig
from distillery.data.schema import LabelSet, Pair, label_indices
from distillery.evaluate import compute_metrics
from distillery.student.model import encode, item_texts, predict_logits, softmax
from distillery.student.similarity import PooledCapture, similarity_targets


@dataclass
class Example:
    """One training pair as the loop sees it: its text and whatever targets the method needs."""

    query: str
    item: str
    target: int
    soft: list[float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


LossFn = Callable[[PreTrainedModel, list[Example], dict[str, torch.Tensor]], torch.Tensor]


@dataclass
class FitResult:
    history: list[dict[str, float]]
    best_epoch: int
    best_val_macro_f1: float
    train_seconds: float
    """Time in optimiser steps alone (validation excluded), for examples/s."""
    examples_seen: int

    @property
    def examples_per_second(self) -> float:
        return self.examples_seen / self.train_seconds if self.train_seconds > 0 else 0.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def class_weights(targets: Sequence[int], num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights normalised to mean 1 (a class absent from training gets weight 1)."""
    counts = np.bincount(np.asarray(targets, dtype=int), minlength=num_classes).astype(float)
    w = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1)), 1.0)
    return torch.tensor(w / w.mean(), dtype=torch.float32)


def examples_from_pairs(pairs: list[Pair], label_set: LabelSet, item_fields: list[str],
                        source: str = "train") -> list[Example]:
    targets = label_indices(pairs, label_set, source)
    return [Example(p.query, t, y) for p, t, y in zip(pairs, item_texts(pairs, item_fields), targets, strict=True)]


def length_batches(examples: list[Example], batch_size: int, rng: random.Random) -> list[list[Example]]:
    """Shuffled batches of similar length: sort within random chunks of 50 batches, then shuffle.

    Real query–item pairs are short (ESCI averages ~36 tokens) and padding to the longest in a random
    batch wastes most of the compute on a CPU; bucketing keeps the randomness of SGD across batches.
    """
    idx = list(range(len(examples)))
    rng.shuffle(idx)
    chunk = batch_size * 50
    batches: list[list[Example]] = []
    for start in range(0, len(idx), chunk):
        part = sorted(idx[start:start + chunk], key=lambda i: len(examples[i].query) + len(examples[i].item))
        batches += [[examples[i] for i in part[j:j + batch_size]] for j in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def weighted_ce(weights: torch.Tensor | None) -> LossFn:
    """The plain fine-tuning loss: cross-entropy on the hard targets, optionally class-weighted."""
    ce = nn.CrossEntropyLoss(weight=weights)

    def loss_fn(model: PreTrainedModel, batch: list[Example], inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = model(**inputs).logits
        return ce(logits, torch.tensor([e.target for e in batch]))

    return loss_fn


def _optimizer(model: PreTrainedModel, cfg: TrainConfig) -> torch.optim.Optimizer:
    head, body_decay, body_no_decay = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("classifier"):
            head.append(p)
        elif p.ndim < 2:
            body_no_decay.append(p)
        else:
            body_decay.append(p)
    return torch.optim.AdamW([
        {"params": body_decay, "lr": cfg.lr, "weight_decay": cfg.weight_decay},
        {"params": body_no_decay, "lr": cfg.lr, "weight_decay": 0.0},
        {"params": head, "lr": cfg.head_lr, "weight_decay": cfg.weight_decay},
    ])


def validate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, pairs: list[Pair],
             label_set: LabelSet, scfg: StudentConfig, batch_size: int) -> dict[str, Any]:
    logits = predict_logits(model, tokenizer, pairs, scfg.item_fields, scfg.max_length, batch_size)
    y = label_indices(pairs, label_set, "validation")
    return compute_metrics(y, logits.argmax(axis=1), label_set.classes, softmax(logits))


class SimilarityAux:
    """The auxiliary term of ``train.similarity_aux``: a linear head on the pooled pair vector regresses
    the starting encoder's bi-encoder cosine of each training pair.  The head is never saved."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, examples: list[Example],
                 scfg: StudentConfig, tcfg: TrainConfig) -> None:
        self.weight = tcfg.similarity_aux
        cos = similarity_targets(model, tokenizer, [e.query for e in examples], [e.item for e in examples],
                                 scfg.max_length, tcfg.eval_batch_size)
        self.targets = {id(e): float(c) for e, c in zip(examples, cos.tolist(), strict=True)}
        self.head = nn.Linear(model.config.hidden_size, 1)
        self.capture = PooledCapture(model)

    def loss(self, batch: list[Example]) -> torch.Tensor:
        pred = self.head(self.capture.take(len(batch))).squeeze(-1)
        return self.weight * nn.functional.mse_loss(pred, torch.tensor([self.targets[id(e)] for e in batch]))


def fit(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, examples: list[Example],
        val_pairs: list[Pair], label_set: LabelSet, scfg: StudentConfig, tcfg: TrainConfig,
        loss_fn: LossFn, desc: str = "train") -> FitResult:
    """Train ``model`` in place with ``loss_fn``; on return it holds the best validation weights."""
    if not examples:
        raise ValueError(f"{desc}: no training examples")
    seed_everything(tcfg.seed)
    if tcfg.threads:
        torch.set_num_threads(tcfg.threads)
    rng = random.Random(tcfg.seed)
    steps_per_epoch = math.ceil(len(examples) / tcfg.batch_size)
    total = steps_per_epoch * tcfg.epochs if not tcfg.max_steps else min(tcfg.max_steps, steps_per_epoch * tcfg.epochs)
    warmup = int(total * tcfg.warmup_ratio)
    opt = _optimizer(model, tcfg)
    aux = SimilarityAux(model, tokenizer, examples, scfg, tcfg) if tcfg.similarity_aux > 0 else None
    if aux is not None:
        # The body's rate, as measured (docs/benchmarks.md): the head only has to track a slow target.
        opt.add_param_group({"params": list(aux.head.parameters()), "lr": tcfg.lr, "weight_decay": 0.0})
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup))
    )
    history: list[dict[str, float]] = []
    best = (-1.0, 0, copy.deepcopy(model.state_dict()))
    bad_epochs, step, seen, train_seconds, t0 = 0, 0, 0, 0.0, time.perf_counter()
    for epoch in range(1, tcfg.epochs + 1):
        model.train()
        losses = []
        bar = tqdm(length_batches(examples, tcfg.batch_size, rng), desc=f"{desc} epoch {epoch}/{tcfg.epochs}",
                   leave=False)
        epoch_start = time.perf_counter()
        for batch in bar:
            inputs = encode(tokenizer, [e.query for e in batch], [e.item for e in batch], scfg.max_length)
            if aux is not None:
                aux.capture.reset()
            loss = loss_fn(model, batch, inputs)
            if aux is not None:
                loss = loss + aux.loss(batch)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.max_grad_norm)
            opt.step()
            sched.step()
            losses.append(loss.item())
            seen += len(batch)
            step += 1
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
            if tcfg.max_steps and step >= tcfg.max_steps:
                break
        train_seconds += time.perf_counter() - epoch_start
        val = validate(model, tokenizer, val_pairs, label_set, scfg, tcfg.eval_batch_size)
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_macro_f1": val["macro_f1"],
                        "val_accuracy": val["accuracy"], "elapsed_s": time.perf_counter() - t0})
        tqdm.write(f"{desc} epoch {epoch}: loss {np.mean(losses):.4f} · val macro-F1 {val['macro_f1']:.4f}")
        if val["macro_f1"] > best[0]:
            best = (val["macro_f1"], epoch, copy.deepcopy(model.state_dict()))
            bad_epochs = 0
        else:
            bad_epochs += 1
        if bad_epochs >= tcfg.patience or (tcfg.max_steps and step >= tcfg.max_steps):
            break
    if aux is not None:
        aux.capture.close()
    model.load_state_dict(best[2])
    return FitResult(history, best[1], best[0], train_seconds, seen)
