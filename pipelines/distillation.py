"""Distillation pipeline: CRSD from the teacher's annotations, and the seed-label baseline it must beat."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Model

from components.student import distill_student, finetune_student
from pipelines._k8s import on_gpu, step


class DistillationOutputs(NamedTuple):
    student: Model
    training: Dataset
    baseline: Dataset
    baseline_model: Model


@dsl.pipeline(name="distillation", description="Distil the teacher's annotations into the BERT student (CRSD).")
def distillation_pipeline(dataset: Input[Dataset], annotations: Input[Dataset], config_json: str,
                          method: str = "crsd") -> DistillationOutputs:
    distilled = on_gpu(step(distill_student(dataset=dataset, annotations=annotations, config_json=config_json,
                                            method=method), "Distil the student"))
    # The seed-only fine-tuned student at the same budget: what distillation has to beat.
    baseline = on_gpu(step(finetune_student(dataset=dataset, config_json=config_json, seed_only=True),
                           "Fine-tune baseline student (seed labels)"))
    return DistillationOutputs(student=distilled.outputs["model"], training=distilled.outputs["training"],
                               baseline=baseline.outputs["training"], baseline_model=baseline.outputs["model"])
