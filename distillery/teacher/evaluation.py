"""Evaluate a teacher on labelled pairs: macro-F1, reasoning/label agreement, reward per dimension, speed."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import numpy as np

from distillery.config import REWARD_DIMENSIONS
from distillery.data.schema import Pair, label_indices
from distillery.teacher.checks import check_answer
from distillery.teacher.protocol import Teacher
from distillery.teacher.reward import RewardScorer


def macro_f1_with_failures(y_true: list[int], y_pred: list[int | None], k: int) -> float:
    """Macro-F1 over the k classes where an unparsed answer (None) counts as a miss for its true class."""
    f1 = []
    for c in range(k):
        tp = sum(t == c and p == c for t, p in zip(y_true, y_pred, strict=True))
        fp = sum(t != c and p == c for t, p in zip(y_true, y_pred, strict=True))
        fn = sum(t == c and p != c for t, p in zip(y_true, y_pred, strict=True))
        if tp + fp + fn:
            f1.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1)) if f1 else 0.0


def evaluate_teacher(teacher: Teacher, pairs: list[Pair], reward: RewardScorer | None = None,
                     batch_size: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Answer ``pairs`` and score the answers; ``reward`` adds the reward model's mean score per head."""
    ls = teacher.label_set
    y = label_indices(pairs, ls, "teacher evaluate")
    start = time.perf_counter()
    answers = teacher.answer(pairs, batch_size, progress=progress)
    seconds = time.perf_counter() - start
    pred = [ls.classes.index(a.label) if a.label else None for a in answers]
    soft = np.array([a.label_probs for a in answers]).argmax(1).tolist()
    checks = np.array([[*check_answer(p, a.raw, ls).values()] for p, a in zip(pairs, answers, strict=True)])
    gen = sum(a.generated_tokens for a in answers)
    out: dict[str, Any] = {
        "n": len(pairs), "macro_f1": macro_f1_with_failures(y, pred, ls.num_classes),
        "macro_f1_label_probs": macro_f1_with_failures(y, soft, ls.num_classes),
        "parse_failure_rate": float(np.mean([p is None for p in pred])),
        # The label is read at the label position; this is how often the free text names that same label.
        "label_agreement": float(np.mean([getattr(a, "disagreement", None) is None for a in answers])),
        "disagreements": dict(Counter(str(d) for a in answers if (d := getattr(a, "disagreement", None)))),
        "predicted_distribution": {c: sum(p == i for p in pred) for i, c in enumerate(ls.classes)},
        "reward_checks": dict(zip(REWARD_DIMENSIONS, checks.mean(0).round(4).tolist(), strict=True)),
        "seconds": round(seconds, 2), "generated_tokens": gen,
        "prompt_tokens": sum(a.prompt_tokens for a in answers),
        "generated_tokens_per_s": round(gen / seconds, 2) if seconds else None,
        "teacher": teacher.identity(),
        "examples": [{"query": p.query, "title": p.title, "gold": p.label, "answer": a.raw, "label": a.label,
                      "parse_error": a.parse_error, "written_label": getattr(a, "written_label", None)}
                      for p, a in list(zip(pairs, answers, strict=True))[:5]],
    }
    if reward is not None:
        rm = reward.score(pairs, [a.raw for a in answers])
        out["reward_model"] = dict(zip(REWARD_DIMENSIONS, rm.mean(0).round(4).tolist(), strict=True))
        out["reward_model_preference"] = float(reward.preference(rm).mean())
    return out
