"""Teacher pipeline: DAPT → SFT → reward model → DPO, then the teacher's evaluation on held-out pairs."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Model

from components.teacher import dapt, dpo, evaluate_teacher, reward_model, sft
from pipelines._k8s import on_gpu, step


class TeacherOutputs(NamedTuple):
    teacher: Model
    evaluation: Dataset


@dsl.pipeline(name="teacher", description="Make the LLM a domain expert: DAPT, SFT on reasoning, reward model, DPO.")
def teacher_pipeline(dataset: Input[Dataset], config_json: str, eval_pairs: int = 200) -> TeacherOutputs:
    adapted = on_gpu(step(dapt(dataset=dataset, config_json=config_json), "Teacher: domain-adaptive pre-training"))
    tuned = on_gpu(step(sft(dataset=dataset, config_json=config_json, base=adapted.outputs["teacher"]),
                        "Teacher: SFT on reasoning"))
    rm = on_gpu(step(reward_model(dataset=dataset, config_json=config_json, base=tuned.outputs["teacher"]),
                     "Teacher: multi-dimensional reward model"))
    aligned = on_gpu(step(dpo(dataset=dataset, config_json=config_json, base=tuned.outputs["teacher"],
                              reward=rm.outputs["reward"]), "Teacher: DPO"))
    evaluated = on_gpu(step(evaluate_teacher(teacher=aligned.outputs["teacher"], reward=rm.outputs["reward"],
                                             dataset=dataset, config_json=config_json, max_pairs=eval_pairs),
                            "Teacher: evaluate on held-out pairs"))
    return TeacherOutputs(teacher=aligned.outputs["teacher"], evaluation=evaluated.outputs["evaluation"])
