"""Data stage: load a data spec, split it by query ONCE, and hand the split to every later stage.

``prepare`` writes a dataset directory (``pairs.jsonl``, ``seed/logs/val/test.jsonl``, ``splits.json``,
``metrics.json``, ``report.md``); every later stage of a run reads those split files through
:func:`open_dataset` and never splits again.  A CLI command given a raw ``--data`` spec splits it once itself
(:meth:`Dataset.from_spec`).

CPU command: ``distillery run --profile tiny`` (its first task); in Python::

    from distillery.config import load_config
    from distillery.stages import data

    data.prepare(load_config("tiny"), "synthetic:600", "/tmp/dataset")
    ds = data.open_dataset("/tmp/dataset")        # ds.splits.seed, .logs, .val, .test
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distillery.config import Config, DataConfig
from distillery.stages._io import PAIRS_FILE, SPLIT_FILES, read_pairs, write_metrics

if TYPE_CHECKING:
    from distillery.data.loaders import LoadReport
    from distillery.data.schema import Pair
    from distillery.data.splits import Splits


@dataclass
class Dataset:
    """Pairs split by query, split at most once: read from a prepared directory's split files, or split from a
    spec's pairs on first use.  ``name`` names the data in reports."""

    name: str
    directory: Path | None = None
    """The prepared dataset directory it reads (``None``: pairs loaded from a spec in this process)."""
    _pairs: list[Pair] | None = field(default=None, repr=False)
    _data_cfg: DataConfig | None = field(default=None, repr=False)
    _splits: Splits | None = field(default=None, repr=False)

    @classmethod
    def from_spec(cls, spec: str, cfg: Config) -> tuple[Dataset, LoadReport]:
        """Load a data spec (a CLI command's ``--data``); it is split once, when a stage first needs the split."""
        from distillery.data.spec import load

        pairs, report = load(spec, synthetic_noise=cfg.data.synthetic_noise)
        return cls(spec, None, pairs, cfg.data), report

    @classmethod
    def from_dir(cls, directory: str | Path) -> Dataset:
        """The split files :func:`prepare` wrote; nothing is split again."""
        d = Path(directory)
        missing = [f"{n}.jsonl" for n in SPLIT_FILES if not (d / f"{n}.jsonl").is_file()]
        if missing:
            raise FileNotFoundError(f"{d}: not a prepared dataset directory (no {', '.join(missing)})")
        return cls(str(d / PAIRS_FILE), d)

    @property
    def splits(self) -> Splits:
        """seed / logs / val / test."""
        if self._splits is None:
            from distillery.data.splits import Splits, split_pairs

            if self.directory is not None:
                self._splits = Splits(**{n: read_pairs(self.directory / f"{n}.jsonl") for n in SPLIT_FILES})
            else:
                assert self._pairs is not None and self._data_cfg is not None
                self._splits = split_pairs(self._pairs, self._data_cfg)
        return self._splits

    def part(self, name: str) -> list[Pair]:
        """One side of the split (``test``…), reading only its file when nothing else was read."""
        if self._splits is None and self.directory is not None:
            return read_pairs(self.directory / f"{name}.jsonl")
        return list(getattr(self.splits, name))

    def keys(self) -> set[tuple[str, str]]:
        """``(query_id, item_id)`` of every pair."""
        parts = [self._pairs] if self._pairs is not None else [getattr(self.splits, n) for n in SPLIT_FILES]
        return {(p.query_id, p.item_id) for part in parts for p in part}

    def all_pairs(self) -> list[Pair]:
        """Every pair in load order (``annotate.split=all``): the spec's pairs, or ``pairs.jsonl``."""
        if self._pairs is None:
            assert self.directory is not None
            self._pairs = read_pairs(self.directory / PAIRS_FILE)
        return self._pairs


DatasetLike = Dataset | str | Path
"""What a stage takes as its data: a :class:`Dataset`, or the path of a prepared dataset directory."""


def open_dataset(data: DatasetLike) -> Dataset:
    return data if isinstance(data, Dataset) else Dataset.from_dir(data)


def prepare(cfg: Config, data_spec: str, out_dir: str | Path) -> dict[str, Any]:
    """Load ``data_spec``, split it by query and write every part as JSONL with the split sizes.

    ``logs.jsonl`` keeps the gold labels only so that annotation accuracy can be measured; the
    teacher and students get them through :func:`distillery.data.hide_labels`.
    """
    from distillery.data import load, split_pairs, write_jsonl
    from distillery.data.splits import subsample_queries

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pairs, load_report = load(data_spec, synthetic_noise=cfg.data.synthetic_noise)
    pairs = subsample_queries(pairs, cfg.data.max_queries, cfg.data.split_seed)
    splits = split_pairs(pairs, cfg.data)
    write_jsonl(pairs, out / PAIRS_FILE)
    for name in SPLIT_FILES:
        write_jsonl(getattr(splits, name), out / f"{name}.jsonl")
    manifest = {name: sorted({p.query_id for p in getattr(splits, name)}) for name in SPLIT_FILES}
    (out / "splits.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    sizes = splits.sizes()
    metrics: dict[str, Any] = {"data": data_spec, "source": load_report.source, "rows_read": load_report.rows_read,
                               "pairs": len(pairs), "split": sizes}
    write_metrics(metrics, out)
    lines = [f"# Data: `{data_spec}`", "", f"{len(pairs)} pairs from {load_report.source}", "",
             "| split | queries | pairs |", "|---|---|---|",
             *[f"| {k} | {v['queries']} | {v['pairs']} |" for k, v in sizes.items()]]
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return metrics
