"""Traffic splits as declared data: arms, weights, sticky bucketing and minimal-movement rebalancing.

A split is a :class:`SplitConfig` (from a YAML/JSON file, a mounted ConfigMap or the admin endpoint).
Users are hashed with the experiment salt into ``N_BUCKETS`` = 10,000 buckets; a :class:`BucketTable`
owns each bucket by one arm, in proportion to the weights (percent, two decimals of precision).
When weights change, only the buckets an arm must give up move (the minimum: half the L1 distance of
the old and new allocations), so users of arms that keep or grow their share keep their arm.
The hash is injectable so routing tests are deterministic and can force any assignment.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

N_BUCKETS = 10_000
HashFn = Callable[[str, str], int]


class SplitError(ValueError):
    """An invalid split: the message names the file (if any) and the field."""


def default_hash(salt: str, user_id: str) -> int:
    """A stable 64-bit hash of (salt, user id); SHA-256 so every process and language agrees."""
    return int.from_bytes(hashlib.sha256(f"{salt}\x1f{user_id}".encode()).digest()[:8], "big")


@dataclass(frozen=True)
class Arm:
    """One arm: a Triton model name and version, and its share of users in percent."""

    name: str
    model: str
    version: str = ""
    weight: float = 0.0


@dataclass(frozen=True)
class SplitConfig:
    """A validated experiment split."""

    experiment: str
    salt: str
    champion: str
    arms: tuple[Arm, ...]
    timeout_s: float = 2.0
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.experiment or not self.salt:
            raise SplitError("experiment and salt must be non-empty strings")
        names = [a.name for a in self.arms]
        if len(self.arms) < 2:
            raise SplitError(f"arms: need at least 2 arms, got {names}")
        if len(set(names)) != len(names):
            raise SplitError(f"arms: names must be unique, got {names}")
        for i, a in enumerate(self.arms):
            if not a.name or not a.model:
                raise SplitError(f"arms[{i}]: name and model are required")
            if not a.weight >= 0:
                raise SplitError(f"arms[{i}].weight={a.weight!r}: must be non-negative")
            if round(a.weight * 100) != round(a.weight * 100, 6):
                raise SplitError(f"arms[{i}].weight={a.weight!r}: at most two decimals (10,000 buckets)")
        total = sum(a.weight for a in self.arms)
        if abs(total - 100.0) > 1e-6:
            given = ", ".join(f"{a.name}={a.weight:g}" for a in self.arms)
            raise SplitError(f"arms[].weight: must sum to 100, got {total:g} ({given})")
        if self.champion not in names:
            raise SplitError(f"champion={self.champion!r}: not one of the arms {names}")
        if not 0 < self.timeout_s <= 60:
            raise SplitError(f"timeout_s={self.timeout_s!r}: must be in (0, 60]")

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)

    @property
    def weights(self) -> dict[str, float]:
        return {a.name: a.weight for a in self.arms}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["arms"] = [asdict(a) for a in self.arms]
        d.pop("extra")
        return d


def split_from_dict(obj: Any, where: str = "split") -> SplitConfig:
    """Build and validate a split from parsed YAML/JSON; errors name ``where`` and the field."""
    if not isinstance(obj, dict):
        raise SplitError(f"{where}: must be a mapping with experiment, salt, champion, arms")
    known = {"experiment", "salt", "champion", "arms", "timeout_s"}
    unknown = sorted(set(obj) - known)
    if unknown:
        raise SplitError(f"{where}: unknown field(s) {unknown} (known: {sorted(known)})")
    arms_raw = obj.get("arms")
    if not isinstance(arms_raw, list):
        raise SplitError(f"{where}: arms must be a list of {{name, model, version, weight}}")
    arms = []
    for i, a in enumerate(arms_raw):
        if not isinstance(a, dict) or set(a) - {"name", "model", "version", "weight"}:
            raise SplitError(f"{where}: arms[{i}] must be a mapping of name, model, version, weight; got {a!r}")
        try:
            arms.append(Arm(str(a.get("name", "")), str(a.get("model", "")), str(a.get("version", "")),
                            float(a.get("weight", 0))))
        except (TypeError, ValueError):
            raise SplitError(f"{where}: arms[{i}].weight={a.get('weight')!r}: must be a number") from None
    try:
        return SplitConfig(str(obj.get("experiment", "")), str(obj.get("salt", "")), str(obj.get("champion", "")),
                           tuple(arms), float(obj.get("timeout_s", 2.0)))
    except SplitError as exc:
        raise SplitError(f"{where}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise SplitError(f"{where}: {exc}") from None


def load_split(path: str | Path) -> SplitConfig:
    """Read a split from a YAML or JSON file (JSON is YAML)."""
    p = Path(path)
    try:
        obj = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SplitError(f"{p}: cannot read the split file: {exc}") from None
    return split_from_dict(obj, str(p))


def save_split(split: SplitConfig, path: str | Path) -> None:
    Path(path).write_text(json.dumps(split.to_dict(), indent=2) + "\n", encoding="utf-8")


def bucket_counts(weights: dict[str, float]) -> dict[str, int]:
    """Buckets per arm: weight × 100, exact for weights with at most two decimals."""
    counts = {k: round(w * N_BUCKETS / 100.0) for k, w in weights.items()}
    drift = N_BUCKETS - sum(counts.values())
    if drift:  # only from float noise; give it to the largest arm
        biggest = max(counts, key=lambda k: counts[k])
        counts[biggest] += drift
    return counts


class BucketTable:
    """Owner arm of each of the 10,000 buckets."""

    def __init__(self, owners: list[str]) -> None:
        if len(owners) != N_BUCKETS:
            raise ValueError(f"a bucket table has {N_BUCKETS} owners, got {len(owners)}")
        self.owners = owners

    @classmethod
    def initial(cls, weights: dict[str, float]) -> BucketTable:
        """Contiguous ranges in arm order."""
        owners: list[str] = []
        for name, n in bucket_counts(weights).items():
            owners += [name] * n
        return cls(owners)

    def rebalance(self, weights: dict[str, float]) -> tuple[BucketTable, int]:
        """A new table for new weights that moves the fewest buckets; returns it and how many moved.

        Arms above their new count release their highest buckets; arms below take released buckets in
        arm order. Arms that vanished release all of theirs.
        """
        target = bucket_counts(weights)
        held: dict[str, list[int]] = {}
        for b, owner in enumerate(self.owners):
            held.setdefault(owner, []).append(b)
        free: list[int] = []
        for owner, buckets in held.items():
            keep = target.get(owner, 0)
            if len(buckets) > keep:
                free += buckets[keep:]
        owners = list(self.owners)
        free.sort()
        it = iter(free)
        for name, n in target.items():
            for _ in range(n - len(held.get(name, []))):
                owners[next(it)] = name
        return BucketTable(owners), len(free)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.owners:
            out[o] = out.get(o, 0) + 1
        return out


class Router:
    """Sticky assignment of users to arms; the split can be replaced at run time."""

    def __init__(self, split: SplitConfig, hash_fn: HashFn = default_hash) -> None:
        self.split = split
        self.hash_fn = hash_fn
        self.table = BucketTable.initial(split.weights)

    def bucket(self, user_id: str) -> int:
        return self.hash_fn(self.split.salt, user_id) % N_BUCKETS

    def assign(self, user_id: str) -> Arm:
        return self.split.arm(self.table.owners[self.bucket(user_id)])

    def update(self, split: SplitConfig) -> int:
        """Adopt a new split; returns the buckets that changed owner (all of them if the salt changed)."""
        if split.salt != self.split.salt:
            self.split, self.table = split, BucketTable.initial(split.weights)
            return N_BUCKETS
        table, moved = self.table.rebalance(split.weights)
        self.split, self.table = split, table
        return moved
