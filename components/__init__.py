"""KFP lightweight components, one per stage: typed artifacts in and out, a call into ``distillery``, nothing else.

Each component runs in :data:`distillery.images.TRAINER_IMAGE` with no ``packages_to_install`` (see
``components/_base.py``): the image (or, locally, the project's own environment) already holds the package.
The logic of every step is in one stage module of ``distillery.stages`` (data, teacher, annotate, distill,
finetune, evaluate, export, deploy, abtest), which the CLI calls too and tests reach without KFP.
"""

from components.annotation import annotate_shard, merge_annotations, plan_shards
from components.data import prepare_data
from components.publish import publish_artifacts
from components.report import assemble_report
from components.serving import ab_evaluation, deploy_model_repository, export_model_repository
from components.student import distill_student, evaluate_model, finetune_student, score_champion
from components.teacher import dapt, dpo, evaluate_teacher, reward_model, sft

__all__ = [
    "ab_evaluation", "annotate_shard", "assemble_report", "dapt", "deploy_model_repository", "distill_student", "dpo",
    "evaluate_model", "evaluate_teacher", "export_model_repository", "finetune_student", "merge_annotations",
    "plan_shards", "prepare_data", "publish_artifacts", "reward_model", "score_champion", "sft",
]
