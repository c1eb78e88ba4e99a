"""Data spec strings accepted by every command.

``esci:PATH[,locale=us]`` · ``jsonl:PATH[,FIELD=COLUMN…]`` · ``csv:PATH[,FIELD=COLUMN…]`` ·
``tsv:PATH[,FIELD=COLUMN…]`` · ``parquet:PATH[,FIELD=COLUMN…]`` · ``synthetic:N[,seed=S][,noise=R]``

``FIELD=COLUMN`` maps a canonical field (``query``, ``item_id``, ``title``, ``label``…) onto the file's
own column name, e.g. ``csv:logs.csv,query=search_term,item_id=sku``.  Every file kind reads a local path
or an ``s3://BUCKET/KEY`` object (or prefix: a parquet dataset), e.g. ``parquet:s3://data/logs.parquet``
(:mod:`distillery.data.remote`).  :func:`check_spec` validates a spec without reading it (the operator
checks a ``DistillationRun``'s ``spec.data.source`` with it; the CRD's pattern says the same).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from distillery.data import loaders, remote, synthetic
from distillery.data.loaders import LoadReport
from distillery.data.schema import DataError, Pair

KINDS = ("esci", "jsonl", "csv", "tsv", "parquet", "synthetic")


@dataclass
class DataSpec:
    kind: str
    target: str
    options: dict[str, str] = field(default_factory=dict)


def parse_spec(spec: str) -> DataSpec:
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in KINDS or not rest:
        raise DataError(f"data spec {spec!r}: expected KIND:TARGET with KIND one of {', '.join(KINDS)}")
    target, *opts = rest.split(",")
    options: dict[str, str] = {}
    for opt in opts:
        k, eq, v = opt.partition("=")
        if not eq or not k:
            raise DataError(f"data spec {spec!r}: option {opt!r} is not KEY=VALUE")
        options[k.strip()] = v.strip()
    return DataSpec(kind, target, options)


def _number(where: str, name: str, raw: str, kind: type[int] | type[float]) -> Any:
    try:
        return kind(raw)
    except ValueError:
        raise DataError(f"{where}: {name}={raw!r} is not {'an integer' if kind is int else 'a number'}") from None


def _synthetic_args(spec: DataSpec, default_noise: float) -> tuple[int, int, float]:
    """``(N, seed, noise)`` of a ``synthetic:`` spec, each checked."""
    allowed = {"seed", "noise"}
    bad = sorted(set(spec.options) - allowed)
    if bad:
        raise DataError(f"synthetic:{spec.target}: unknown option(s) {bad} (allowed: seed, noise)")
    where = f"synthetic:{spec.target}"
    n = _number(where, "N", spec.target, int)
    seed = _number(where, "seed", spec.options.get("seed", "0"), int)
    noise = _number(where, "noise", spec.options.get("noise", str(default_noise)), float)
    if n <= 0:
        raise DataError(f"{where}: N={n} must be a positive number of pairs")
    if seed < 0:
        raise DataError(f"{where}: seed={seed} must be ≥ 0")
    if not 0.0 <= noise <= 0.5:
        raise DataError(f"{where}: noise={noise} must be in [0, 0.5]")
    return n, seed, noise


def _synthetic(spec: DataSpec, default_noise: float) -> tuple[list[Pair], LoadReport]:
    n, seed, noise = _synthetic_args(spec, default_noise)
    pairs = synthetic.generate(n, seed=seed, noise=noise)
    return pairs, LoadReport(f"synthetic:{n},seed={seed},noise={noise}", rows_read=len(pairs))


def check_spec(spec: str) -> DataSpec:
    """Everything about ``spec`` that can be known without reading it: the kind, the target's form (a local
    path or ``s3://BUCKET/KEY``), the options each kind allows and their values; raises :class:`DataError`."""
    s = parse_spec(spec)
    if s.kind == "synthetic":
        _synthetic_args(s, 0.0)
        return s
    if not s.target:
        raise DataError(f"data spec {spec!r}: no file named")
    remote.check_target(s.target, spec)
    if s.kind == "esci":
        bad = sorted(set(s.options) - {"locale"})
        if bad:
            raise DataError(f"esci:{s.target}: unknown option(s) {bad} (allowed: locale)")
    else:
        loaders.canonical_mapping(s.options, spec)
    return s


def _load_file(s: DataSpec, spec: str, path: str) -> tuple[list[Pair], LoadReport]:
    if s.kind == "esci":
        locale = s.options.get("locale", "us")
        return loaders.load_esci(path, locale=None if locale in ("", "all") else locale)
    mapping = loaders.canonical_mapping(s.options, spec)
    if s.kind == "jsonl":
        return loaders.load_jsonl(path, mapping)
    if s.kind == "parquet":
        return loaders.load_parquet(path, mapping)
    return loaders.load_delimited(path, mapping, "\t" if s.kind == "tsv" else ",")


def load(spec: str, *, synthetic_noise: float = 0.05) -> tuple[list[Pair], LoadReport]:
    """Load every pair a spec names, with the report of what was read and skipped."""
    s = check_spec(spec)
    if s.kind == "synthetic":
        return _synthetic(s, synthetic_noise)
    pairs, report = remote.read(s.target, lambda path: _load_file(s, spec, path))
    report.source = s.target  # the URI, not the temporary copy
    return pairs, report


def load_pairs(spec: str, *, synthetic_noise: float = 0.05) -> list[Pair]:
    return load(spec, synthetic_noise=synthetic_noise)[0]
