"""Per-user totals: what the simulator and a production event log both produce, and what the gate judges.

A neutral module so that the gate (:mod:`distillery.abtest.gate`) and the operator's log folding do not
depend on the simulated users (:mod:`distillery.abtest.simulator`) that also fill it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

USER_FIELDS = ("sessions", "shown", "clicks", "conversions", "gtv", "ndcg_sum")


@dataclass
class UserTable:
    """Per-user totals, the gate's input (one row per user, arm is sticky)."""

    user_ids: list[str] = field(default_factory=list)
    arms: list[str] = field(default_factory=list)
    data: dict[str, list[float]] = field(default_factory=lambda: {f: [] for f in USER_FIELDS})

    def extend(self, other: UserTable) -> None:
        self.user_ids += other.user_ids
        self.arms += other.arms
        for f in USER_FIELDS:
            self.data[f] += other.data[f]

    def __len__(self) -> int:
        return len(self.user_ids)

    def column(self, name: str) -> np.ndarray:
        return np.asarray(self.data[name], dtype=float)
