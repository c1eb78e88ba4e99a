"""The end-to-end pipeline: data → (teacher → annotation) → student → evaluation → gated deployment → report."""


import json
from typing import Any, NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Markdown

from components.data import prepare_data
from components.publish import publish_artifacts
from components.report import assemble_report
from components.serving import ab_evaluation, build_tensorrt_plan, deploy_model_repository, export_model_repository
from components.student import deployment_gate, evaluate_model, score_champion
from pipelines._k8s import on_cpu, on_gpu, step, with_s3
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


def _deploy(repository: Any, serving_uri: Any, run_label: Any) -> None:
    """The deploy step of either branch (the repository with TensorRT plans, or without)."""
    with_s3(on_cpu(step(deploy_model_repository(model_repository=repository, target=serving_uri, run_label=run_label),
                        "Deploy the model repository", cache=False)))


@dsl.pipeline(name="relevance-distillery",
              description="Distil a relevance teacher into a BERT student, evaluate it, and deploy it "
                          "when it is at least as good as the champion and the seed-label baseline.")
def relevance_distillery(data_spec: str = DEFAULT_DATA, config_json: str = DEFAULT_CONFIG, shards: int = 2,
                         distill_method: str = "crsd", champion: str = "", serving_uri: str = "",
                         ab_users: int = 2000, teacher_eval_pairs: int = 200, output_uri: str = "",
                         run_label: str = "", tensorrt_plan: bool = False, checkpoint_uri: str = "") -> Outputs:
    # with_s3: the data spec may name an s3:// file (parquet:s3://…)
    data = with_s3(on_cpu(step(prepare_data(data_spec=data_spec, config_json=config_json),
                               "Prepare data: split by query")))
    dataset = data.outputs["dataset"]
    teacher = step(teacher_pipeline(dataset=dataset, config_json=config_json, eval_pairs=teacher_eval_pairs),
                   "Teacher")
    # checkpoint_uri (s3://; the operator passes <output.uri>/checkpoints): a restarted shard pod resumes from it.
    annotation = step(annotation_pipeline(dataset=dataset, teacher=teacher.outputs["teacher"], config_json=config_json,
                                          shards=shards, checkpoint_uri=checkpoint_uri),
                      "Annotation (teacher, sharded)")
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
        # No serving repository named: nothing to publish into, so the step is skipped rather than failed.
        with dsl.If(serving_uri != "", name="serving-repository-given"):
            # GPU serving (tensorrt_plan=True, export.variants with tensorrt) deploys the repository with its
            # TensorRT plans, built on a GPU; the local runner and CPU clusters deploy the export as it is.
            with dsl.If(tensorrt_plan == True, name="tensorrt-plan-requested"):  # noqa: E712
                plan = on_gpu(step(build_tensorrt_plan(model_repository=repository), "Build the TensorRT plan"),
                              memory="16G")
                _deploy(plan.outputs["plan_repository"], serving_uri, run_label)
            with dsl.If(tensorrt_plan == False, name="no-tensorrt-plan"):  # noqa: E712
                _deploy(repository, serving_uri, run_label)
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
