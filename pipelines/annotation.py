"""Annotation pipeline: the teacher labels the unlabelled log pairs in shards (ParallelFor), then one merge."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model

from components.annotation import annotate_shard, merge_annotations, plan_shards
from pipelines._k8s import on_cpu, on_gpu, step, with_s3

PARALLELISM = 2
"""Shards annotated at once (GPU pods on a cluster; the two cores of a laptop locally)."""
RETRIES, BACKOFF, BACKOFF_FACTOR, BACKOFF_MAX = 3, "15s", 2.0, "120s"
"""A shard pod lost to eviction or a node failure is retried; with a checkpoint it resumes where it stopped.
The backoff stays short because KFP's local runner honours it too: a shard that fails for good (bad input)
costs at most 15 + 30 + 60 s more before the run stops."""


@dsl.pipeline(name="annotation", description="Annotate the log pairs with the teacher, in shards, then merge.")
def annotation_pipeline(dataset: Input[Dataset], teacher: Input[Model], config_json: str, shards: int = 2,
                        checkpoint_uri: str = "") -> Dataset:
    """``checkpoint_uri`` (``s3://``, empty: local disk only) receives each shard's records as it goes."""
    plan = on_cpu(step(plan_shards(shards=shards), "Plan annotation shards"), memory="512M")
    with dsl.ParallelFor(plan.output, parallelism=PARALLELISM, name="annotation-shards") as shard:
        one = with_s3(on_gpu(step(annotate_shard(dataset=dataset, teacher=teacher, config_json=config_json,
                                                 shard=shard, num_shards=shards, checkpoint_uri=checkpoint_uri),
                                  "Annotate one shard")))
        one.set_retry(RETRIES, BACKOFF, BACKOFF_FACTOR, BACKOFF_MAX)
    merged = on_cpu(step(merge_annotations(shards=dsl.Collected(one.outputs["annotations"])),
                         "Merge annotation shards"))
    return merged.outputs["annotations"]
