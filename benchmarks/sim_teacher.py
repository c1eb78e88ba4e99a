"""A simulated teacher for the synthetic marketplace (benchmarks only): attribute-grounded reasoning with
controlled, realistic mistakes, behind the same interface as ``distillery.teacher.inference.Teacher``.

Why: the trained LLM teacher of the teacher issue exists for ESCI; on the synthetic marketplace this
stand-in lets the distillation table run in minutes with a teacher of known quality.  Its mistakes are
systematic, not random: with probability ``overlook`` it ignores one constraint of the query (its
reasoning then wrongly calls that constraint met, so reasoning and label agree, as an LLM's do), and
with probability ``flip`` it writes a random other label (reasoning and label disagree).
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from distillery.data.schema import Pair
from distillery.data.synthetic import PRICE_LEVELS, SIBLINGS
from distillery.teacher.inference import TeacherAnswer

CLASSES = ("Exact", "Partial", "Irrelevant")


def _level(price: int) -> str:
    return next((k for k, (lo, hi) in PRICE_LEVELS.items() if lo <= price < hi), "premium")


def _service(p: Pair) -> dict[str, Any]:
    kind, attrs, district, price = ([*p.attributes.split("; "), "", "", "", ""])[:4]
    digits = "".join(ch for ch in price if ch.isdigit())
    return {"category": p.brand, "type": kind, "attrs": [a for a in attrs.split(", ") if a], "district": district,
            "level": _level(int(digits)) if digits else ""}


class SimTeacher:
    def __init__(self, overlook: float = 0.25, flip: float = 0.05, seed: int = 0) -> None:
        self.overlook, self.flip, self.seed = overlook, flip, seed

    def identity(self) -> dict[str, Any]:
        return {"model": "simulated-teacher", "version": "1", "overlook": self.overlook, "flip": self.flip,
                "seed": self.seed}

    def _rng(self, p: Pair) -> random.Random:
        return random.Random(hashlib.sha1(f"{self.seed}|{p.query_id}|{p.item_id}".encode()).hexdigest())

    def _one(self, p: Pair) -> TeacherAnswer:
        rng, intent, svc = self._rng(p), p.meta["intent"], _service(p)
        checks = [(a, intent[a]) for a in ("type", "attr", "district", "price_level") if intent.get(a)]
        skipped = rng.choice(checks)[0] if checks and rng.random() < self.overlook else None
        facts = [f"the query asks for a {intent['category']}"]
        misses = 0
        if svc["category"] != intent["category"]:
            sib = frozenset({svc["category"], intent["category"]}) in SIBLINGS
            facts.append(f"the item is a {svc['category']}, " + ("a related service" if sib else "another category"))
            label = "Partial" if sib else "Irrelevant"
        else:
            facts.append(f"the item is a {svc['category']} offering {svc['type']}")
            have = {"type": svc["type"], "attr": svc["attrs"], "district": svc["district"], "price_level": svc["level"]}
            for aspect, want in checks:
                met = want in have[aspect] if aspect == "attr" else str(want).lower() == str(have[aspect]).lower()
                met = met or aspect == skipped
                misses += not met
                facts.append(f"{aspect.replace('_', ' ')} {want}: {'met' if met else 'missed'}")
            label = "Partial" if misses else "Exact"
        if rng.random() < self.flip:
            label = rng.choice([c for c in CLASSES if c != label])
        conf = rng.uniform(0.55, 0.9)
        probs = [conf if c == label else (1 - conf) / 2 for c in CLASSES]
        reasoning = "; ".join(facts) + "."
        return TeacherAnswer(label, probs, reasoning, f"Reasoning: {reasoning}\nLabel: {label}", None,
                         60 + len(p.title.split()), len(reasoning.split()) + 3)

    def answer(self, pairs: list[Pair], batch_size: int | None = None) -> list[TeacherAnswer]:
        return [self._one(p) for p in pairs]
