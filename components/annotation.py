"""Annotation: the shard plan, one teacher-annotated shard (a ParallelFor body), the merge of the shards."""

from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

from components._base import component


@component
def plan_shards(shards: int) -> list:
    """The shard indices the annotation fan-out iterates over."""
    from distillery.stages.annotate import shard_indices

    return shard_indices(shards)


@component
def annotate_shard(dataset: Input[Dataset], config_json: str, shard: int, num_shards: int,
                   annotations: Output[Dataset], teacher: Input[Model] = None, checkpoint_uri: str = "") -> None:
    """Annotate shard ``shard`` of ``num_shards`` with the teacher (crash-safe: a restart resumes).  With
    ``checkpoint_uri`` (``s3://``) every batch is checkpointed there, so a retried pod resumes on an empty disk."""
    from distillery.annotation.checkpoint import checkpoint_key
    from distillery.stages._io import config_from_json
    from distillery.stages.annotate import annotate_shard as run

    # The inputs' URIs are the same for every retry of this task (and for a resubmitted run that hits KFP's
    # cache upstream), unlike the run id, which would also make this task's own cache key unique per run.
    key = checkpoint_key(dataset.uri, teacher.uri if teacher else "", config_json)
    run(config_from_json(config_json), teacher.path if teacher else None, dataset.path, shard, num_shards,
        annotations.path, metrics_dir=annotations.path, checkpoint_uri=checkpoint_uri, checkpoint_key=key)


@component
def merge_annotations(shards: Input[list[Dataset]], annotations: Output[Dataset], metrics: Output[Metrics],
                      report: Output[Markdown]) -> None:
    """Merge the shards: every pair exactly once, label distribution, parse failures, throughput."""
    from distillery.pipeline import artifacts
    from distillery.stages.annotate import merge_dirs

    m = merge_dirs([s.path for s in shards], annotations.path)
    artifacts.finish(annotations.path, m, metrics, report, keys=("records", "parse_failures", "pairs_per_second"))
