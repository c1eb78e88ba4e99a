"""The data layer: one pair schema, loaders, the synthetic marketplace and query-grouped splits."""

from distillery.data.loaders import LoadReport
from distillery.data.schema import (
    FOUR_CLASS,
    THREE_CLASS,
    DataError,
    LabelSet,
    Pair,
    get_label_set,
    label_indices,
    write_jsonl,
)
from distillery.data.spec import load, load_pairs, parse_spec
from distillery.data.splits import Splits, hide_labels, split_pairs

__all__ = [
    "FOUR_CLASS", "THREE_CLASS", "DataError", "LabelSet", "LoadReport", "Pair", "Splits", "get_label_set",
    "hide_labels", "label_indices", "load", "load_pairs", "parse_spec", "split_pairs", "write_jsonl",
]
