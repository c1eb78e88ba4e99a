"""Annotation pipeline: the teacher labels the unlabelled log pairs in shards (ParallelFor), then one merge."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model

from components.annotation import annotate_shard, merge_annotations, plan_shards
from pipelines._k8s import on_cpu, on_gpu, step

PARALLELISM = 2
"""Shards annotated at once (GPU pods on a cluster; the two cores of a laptop locally)."""


@dsl.pipeline(name="annotation", description="Annotate the log pairs with the teacher, in shards, then merge.")
def annotation_pipeline(dataset: Input[Dataset], teacher: Input[Model], config_json: str, shards: int = 2
                        ) -> Dataset:
    plan = on_cpu(step(plan_shards(shards=shards), "Plan annotation shards"), memory="512M")
    with dsl.ParallelFor(plan.output, parallelism=PARALLELISM, name="annotation-shards") as shard:
        one = on_gpu(step(annotate_shard(dataset=dataset, teacher=teacher, config_json=config_json, shard=shard,
                                         num_shards=shards), "Annotate one shard"))
    merged = on_cpu(step(merge_annotations(shards=dsl.Collected(one.outputs["annotations"])),
                         "Merge annotation shards"))
    return merged.outputs["annotations"]
