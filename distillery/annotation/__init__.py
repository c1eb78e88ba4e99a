"""Sharded, crash-safe annotation of unlabelled search-log pairs by the teacher, and the merge of shards.

CPU commands (tiny teacher, seconds)::

    distillery annotate --teacher tiny --data synthetic:200 --shard 0 --num-shards 2 --out /tmp/ann --profile tiny
    distillery annotate --teacher tiny --data synthetic:200 --shard 1 --num-shards 2 --out /tmp/ann --profile tiny
    distillery annotate merge --in /tmp/ann --out /tmp/ann/annotations.jsonl

On a cluster each shard also checkpoints its records to the artifact store and a retried pod resumes from there
(:mod:`distillery.annotation.checkpoint`).
"""

from distillery.annotation.merge import MergeReport, load_annotations, merge_shards
from distillery.annotation.run import ShardResult, annotate_shard, select_pairs
from distillery.annotation.shards import (
    AnnotationError,
    pair_key,
    partition,
    read_shard_file,
    shard_of,
    shard_paths,
)

__all__ = [
    "AnnotationError", "MergeReport", "ShardResult", "annotate_shard", "load_annotations", "merge_shards",
    "pair_key", "partition", "read_shard_file", "select_pairs", "shard_of", "shard_paths",
]
