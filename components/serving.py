"""After training: export to a Triton model repository, deploy it, evaluate it online against the champion."""

from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from components._base import component


@component
def export_model_repository(model: Input[Model], dataset: Input[Dataset], config_json: str,
                            model_repository: Output[Artifact], export: Output[Dataset], metrics: Output[Metrics],
                            report: Output[Markdown]) -> None:
    """ONNX export with the parity gate on held-out pairs, written as a Triton model repository."""
    from distillery.pipeline import artifacts
    from distillery.pipeline.serve_steps import export_repository

    m = export_repository(model.path, dataset.path, config_json, model_repository.path, export.path)
    artifacts.finish(export.path, m, metrics, report, keys=("parity_pairs",))


@component
def deploy_model_repository(model_repository: Input[Artifact], target: str) -> str:
    """Copy the repository to where Triton serves from (``s3://`` with checksums, or a directory)."""
    from distillery.pipeline.serve_steps import deploy

    return deploy(model_repository.path, target)


@component
def ab_evaluation(champion: str, challenger: Input[Model], dataset: Input[Dataset], config_json: str, users: int,
                  evaluation: Output[Dataset], metrics: Output[Metrics], report: Output[Markdown]) -> str:
    """Champion vs challenger through Triton and the A/B splitter with simulated users; returns the decision."""
    from distillery.pipeline import artifacts
    from distillery.pipeline.serve_steps import ab_evaluate

    m = ab_evaluate(champion, challenger.path, dataset.path, config_json, evaluation.path, users)
    artifacts.finish(evaluation.path, m, metrics, report, keys=("users", "srm_p"))
    return str(m["decision"])
