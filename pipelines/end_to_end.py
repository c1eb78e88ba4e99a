"""The end-to-end pipeline: data → (teacher → annotation) → student → evaluation → gated deployment → report."""


import json
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Markdown

from components.data import prepare_data
from components.publish import publish_artifacts
from components.report import assemble_report
from components.serving import ab_evaluation, deploy_model_repository, export_model_repository
from components.student import deployment_gate, evaluate_model, score_champion
from pipelines._k8s import on_cpu, step, with_s3
from pipelines.annotation import annotation_pipeline
from pipelines.distillation import distillation_pipeline
from pipelines.teacher import teacher_pipeline

DEFAULT_DATA = "synthetic:3000"
# A profile name or the JSON of a resolved config; `distillery run` passes the JSON of its own.
DEFAULT_CONFIG = "demo"

# Stages whose library modules are not in the package yet: left out, never faked (none at present).
MISSING: dict[str, str] = {}


class Outputs(NamedTuple):
    report: Markdown
    bundle: Artifact


@dsl.pipeline(name="relevance-distillery",
              description="Distil a relevance teacher into a BERT student, evaluate it, and deploy it "
                          "when it is at least as good as the champion and the seed-label baseline.")
def relevance_distillery(data_spec: str = DEFAULT_DATA, config_json: str = DEFAULT_CONFIG, shards: int = 2,
                         distill_method: str = "crsd", champion: str = "", serving_uri: str = "",
                         ab_users: int = 2000, teacher_eval_pairs: int = 200, output_uri: str = "") -> Outputs:
    data = on_cpu(step(prepare_data(data_spec=data_spec, config_json=config_json), "Prepare data: split by query"))
    dataset = data.outputs["dataset"]
    teacher = step(teacher_pipeline(dataset=dataset, config_json=config_json, eval_pairs=teacher_eval_pairs),
                   "Teacher")
    annotation = step(annotation_pipeline(dataset=dataset, teacher=teacher.outputs["teacher"], config_json=config_json,
                                          shards=shards), "Annotation (teacher, sharded)")
    annotations = annotation.output
    student = step(distillation_pipeline(dataset=dataset, annotations=annotations, config_json=config_json,
                                         method=distill_method), "Distillation")
    model = student.outputs["student"]
    student_eval = on_cpu(step(evaluate_model(model=model, dataset=dataset, config_json=config_json, name="student"),
                               "Evaluate student on held-out queries"))
    # The champion is whatever serves now: its score is re-measured on these queries, never cached.
    champion_eval = with_s3(on_cpu(step(score_champion(champion=champion, dataset=dataset, config_json=config_json),
                                        "Score the serving champion", cache=False)))
    baseline_model = student.outputs["baseline_model"]
    baseline_eval = on_cpu(step(evaluate_model(model=baseline_model, dataset=dataset, config_json=config_json,
                                               name="baseline"), "Evaluate the seed-label baseline"))
    export = on_cpu(step(export_model_repository(model=model, dataset=dataset, config_json=config_json),
                         "Export to a Triton model repository"), memory="8G")
    repository = export.outputs["model_repository"]
    # Deploy only a student at least as good as the champion and the run's own seed-label baseline on the same
    # held-out queries (the rule is distillery.pipeline.report.gate; the report says why).
    decision = on_cpu(step(deployment_gate(student_f1=student_eval.outputs["Output"],
                                           champion_f1=champion_eval.outputs["Output"],
                                           baseline_f1=baseline_eval.outputs["Output"]),
                           "Deployment gate", cache=False))
    with dsl.If(decision.output == True, name="student-beats-champion-and-baseline"):  # noqa: E712
        with_s3(on_cpu(step(deploy_model_repository(model_repository=repository, target=serving_uri),
                            "Deploy the model repository", cache=False)))
        with dsl.If(champion != "", name="champion-exists"):
            on_cpu(step(ab_evaluation(champion=champion, challenger=model, dataset=dataset, config_json=config_json,
                                      users=ab_users), "A/B evaluation against the champion", cache=False),
                   memory="8G", cpu="2")
    report = on_cpu(step(assemble_report(dataset=dataset, student=model, baseline=student.outputs["baseline"],
                                         baseline_model=baseline_model,
                                         baseline_eval=baseline_eval.outputs["evaluation"],
                                         annotations=annotations, training=student.outputs["training"],
                                         model_repository=repository, export=export.outputs["export"],
                                         teacher=teacher.outputs["teacher"],
                                         teacher_eval=teacher.outputs["evaluation"],
                                         student_eval=student_eval.outputs["evaluation"],
                                         champion_eval=champion_eval.outputs["evaluation"],
                                         missing_json=json.dumps(MISSING, sort_keys=True)),
                         "Assemble the run report", cache=False))
    with dsl.If(output_uri != "", name="publish-requested"):
        with_s3(on_cpu(step(publish_artifacts(uri=output_uri, student=model, report=report.outputs["bundle"],
                                              annotations=annotations, model_repository=repository,
                                              teacher=teacher.outputs["teacher"], baseline=baseline_model),
                            "Publish artifacts", cache=False)))
    return Outputs(report=report.outputs["report"], bundle=report.outputs["bundle"])
