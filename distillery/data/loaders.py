"""Loaders for the ESCI subset TSV, the full ESCI parquet release and generic JSONL/CSV/Parquet.

Each loader validates as it reads and raises :class:`DataError` naming the file, the line (1-based, the
header being line 1 for delimited files) and the field.  No row is dropped silently: a loader either
fails or returns every row, and the only rule-based skips (the ESCI locale filter) are counted in the
returned :class:`LoadReport`.
"""

from __future__ import annotations

import csv
import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distillery.data.schema import ITEM_FIELDS, LABEL_SETS, LABEL_SOURCES, DataError, Pair

KNOWN_LABELS = sorted({alias for ls in LABEL_SETS.values() for alias in ls.aliases})

REQUIRED = ("query_id", "query", "item_id")
CANONICAL = (*REQUIRED, *ITEM_FIELDS, "label", "label_source")

# The ESCI subset shipped in shared/data: one header line, tab-separated.
ESCI_TSV_COLUMNS = {
    "query_id": "query_id", "query": "query", "item_id": "product_id", "label": "esci_label",
    "title": "title", "brand": "brand", "color": "color", "bullet_points": "bullet_points",
    "description": "description",
}
# The full ESCI release (shopping_queries_dataset_{examples,products} merged) in parquet.
ESCI_PARQUET_COLUMNS = {
    "query_id": "query_id", "query": "query", "item_id": "product_id", "label": "esci_label",
    "title": "product_title", "brand": "product_brand", "color": "product_color",
    "bullet_points": "product_bullet_point", "description": "product_description",
}


@dataclass
class LoadReport:
    """What a loader read and what it skipped by rule (never silently)."""

    source: str
    rows_read: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a data file")


def _lines(path: Path) -> Iterator[str]:
    """The file's lines (``.gz`` decompressed), each decoded as strict UTF-8 on its own, so that a wrong
    encoding, a corrupt or a truncated gzip stream is an error naming the file and the line."""
    _check_file(path)
    lineno = 0
    with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as fh:
        try:
            for lineno, raw in enumerate(fh, start=1):
                try:
                    yield raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    raise DataError(f"{path}: not valid UTF-8 at line {lineno}, column {exc.start + 1} ({exc.reason}); "
                                    "re-encode the file as UTF-8") from None
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            kind = "truncated" if isinstance(exc, EOFError) else "corrupt"
            raise DataError(f"{path}:{lineno + 1}: {kind} gzip file ({exc})") from None


def _text(value: Any, where: str, column: str) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN from pandas/parquet
        return ""
    if isinstance(value, dict | list | tuple | bytes):
        raise DataError(f"{where}: field {column!r} must be text or a number, got {type(value).__name__}")
    return str(value)


def _row_to_pair(row: dict[str, Any], mapping: dict[str, str], where: str) -> Pair:
    values: dict[str, Any] = {}
    for canon, col in mapping.items():
        if col not in row:
            continue
        values[canon] = _text(row[col], where, col)
    for req in REQUIRED:
        if not values.get(req, "").strip():
            raise DataError(f"{where}: field {mapping.get(req, req)!r} ({req}) is missing or empty")
    label = values.pop("label", "").strip() or None
    if label is not None and label.lower() not in KNOWN_LABELS:
        raise DataError(f"{where}: field {mapping.get('label', 'label')!r}: unknown label {label!r} "
                        "(expected Exact/Substitute/Complement/Partial/Irrelevant or E/S/C/I)")
    source = values.pop("label_source", "").strip() or ("human" if label else None)
    if source is not None and source not in LABEL_SOURCES:
        raise DataError(f"{where}: field 'label_source': {source!r} must be one of {LABEL_SOURCES}")
    return Pair(label=label, label_source=source, **values)


def _check_columns(columns: list[str], mapping: dict[str, str], where: str) -> None:
    missing = [mapping[c] for c in REQUIRED if mapping.get(c) not in columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing}; found {columns}")


def _iter_delimited(path: Path, delimiter: str) -> Iterator[tuple[int, list[str], dict[str, str]]]:
    reader = csv.reader(_lines(path), delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else 0)
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty file (no header line)")
        for cells in reader:
            if not cells:
                continue
            lineno = reader.line_num
            if len(cells) != len(header):
                raise DataError(f"{path}:{lineno}: malformed row: {len(cells)} fields, the header has {len(header)}")
            yield lineno, header, dict(zip(header, cells, strict=True))
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: malformed delimited file: {exc}") from None


class _Seen:
    """Every ``(query_id, item_id)`` once: a repeated pair is an error naming both places (never merged)."""

    def __init__(self) -> None:
        self.first: dict[tuple[str, str], tuple[str, str | None]] = {}

    def add(self, pair: Pair, where: str, short: str) -> Pair:
        key = (pair.query_id, pair.item_id)
        if key in self.first:
            place, label = self.first[key]
            what = (f"with a conflicting label ({label!r} there, {pair.label!r} here)" if label != pair.label
                    else "again")
            raise DataError(f"{where}: duplicate pair {key[0]}/{key[1]} (query_id/item_id), first seen at {place}, "
                            f"{what}")
        self.first[key] = (short, pair.label)
        return pair


def load_delimited(path: str | Path, mapping: dict[str, str], delimiter: str) -> tuple[list[Pair], LoadReport]:
    path = Path(path)
    report = LoadReport(str(path))
    pairs: list[Pair] = []
    seen = _Seen()
    checked = False
    for lineno, header, row in _iter_delimited(path, delimiter):
        if not checked:
            _check_columns(header, mapping, str(path))
            checked = True
        pairs.append(seen.add(_row_to_pair(row, mapping, f"{path}:{lineno}"), f"{path}:{lineno}", f"line {lineno}"))
    if not pairs:
        raise DataError(f"{path}: no data rows")
    report.rows_read = len(pairs)
    return pairs, report


def load_jsonl(path: str | Path, mapping: dict[str, str]) -> tuple[list[Pair], LoadReport]:
    path = Path(path)
    pairs: list[Pair] = []
    seen = _Seen()
    for lineno, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: malformed JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        where = f"{path}:{lineno}"
        pairs.append(seen.add(_row_to_pair(obj, mapping, where), where, f"line {lineno}"))
    if not pairs:
        raise DataError(f"{path}: empty file (no records)")
    return pairs, LoadReport(str(path), rows_read=len(pairs))


def load_parquet(
    path: str | Path, mapping: dict[str, str], filters: dict[str, str] | None = None
) -> tuple[list[Pair], LoadReport]:
    """Parquet rows; ``filters`` keeps rows whose column equals a value, and counts the rest as skipped."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    try:
        table = pq.read_table(path)  # a directory is a dataset of parquet files
    except Exception as exc:  # pyarrow raises several types for a non-parquet file
        raise DataError(f"{path}: not a readable parquet file: {' '.join(str(exc).split())}") from None
    columns = table.column_names
    _check_columns(columns, mapping, str(path))
    report = LoadReport(str(path))
    pairs = []
    seen = _Seen()
    for i, row in enumerate(table.to_pylist()):
        skip = next((k for k, v in (filters or {}).items() if _text(row.get(k), f"{path}: row {i}", k) != v),
                    None)
        if skip is not None:
            key = f"{skip}!={filters[skip]}"  # type: ignore[index]
            report.skipped[key] = report.skipped.get(key, 0) + 1
            continue
        pairs.append(seen.add(_row_to_pair(row, mapping, f"{path}: row {i}"), f"{path}: row {i}", f"row {i}"))
    if not pairs:
        raise DataError(f"{path}: no data rows (after filters {filters or {}}: skipped {report.skipped})")
    report.rows_read = len(pairs)
    return pairs, report


def load_esci(path: str | Path, locale: str | None = "us") -> tuple[list[Pair], LoadReport]:
    """The ESCI subset TSV (``.tsv``/``.tsv.gz``) or the full release's parquet layout."""
    p = Path(path)
    if p.is_dir() and p.suffix != ".parquet":
        raise DataError(f"{p}: is a directory, not a data file")
    if p.suffix == ".parquet":
        filters = {"product_locale": locale} if locale else None
        if filters and p.exists():
            import pyarrow.parquet as pq

            if "product_locale" not in pq.read_schema(p).names:
                filters = None
        return load_parquet(p, ESCI_PARQUET_COLUMNS, filters)
    return load_delimited(p, ESCI_TSV_COLUMNS, "\t")


def canonical_mapping(overrides: dict[str, str], spec: str = "") -> dict[str, str]:
    """Canonical field → source column, with the user's renames applied."""
    unknown = sorted(set(overrides) - set(CANONICAL))
    if unknown:
        where = f"data spec {spec!r}: " if spec else ""
        raise DataError(f"{where}unknown field(s) in the column mapping: {unknown} (fields: {', '.join(CANONICAL)})")
    empty = sorted(k for k, v in overrides.items() if not v)
    if empty:
        where = f"data spec {spec!r}: " if spec else ""
        raise DataError(f"{where}field(s) {empty} mapped to an empty column name")
    mapping = {c: c for c in CANONICAL}
    mapping.update(overrides)
    return mapping
