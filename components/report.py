"""The run report: every stage's metrics tables, PNG plots, ``metrics.json`` with the artifacts map."""

from kfp.dsl import Artifact, Dataset, Input, Markdown, Model, Output

from components._base import component


@component
def assemble_report(dataset: Input[Dataset], student: Input[Model], student_eval: Input[Dataset],
                    champion_eval: Input[Dataset], missing_json: str, report: Output[Markdown],
                    bundle: Output[Artifact], baseline: Input[Dataset] = None, baseline_model: Input[Model] = None,
                    baseline_eval: Input[Dataset] = None, training: Input[Dataset] = None,
                    teacher: Input[Model] = None,
                    teacher_eval: Input[Dataset] = None, annotations: Input[Dataset] = None,
                    model_repository: Input[Artifact] = None, export: Input[Dataset] = None) -> None:
    """Assemble ``report.md`` + PNGs + ``metrics.json`` from the stages' own output files."""
    import json

    from distillery.pipeline import artifacts
    from distillery.pipeline.report import assemble_from_artifacts

    m = assemble_from_artifacts(bundle.path, json.loads(missing_json), student, baseline_model, dataset=dataset,
                                baseline=baseline, baseline_eval=baseline_eval, training=training,
                                student_eval=student_eval, champion_eval=champion_eval, teacher=teacher,
                                teacher_eval=teacher_eval, annotations=annotations,
                                model_repository=model_repository, export=export)
    artifacts.finish(bundle.path, m, None, report)
