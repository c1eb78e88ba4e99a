"""After training: export to a Triton model repository, deploy it, evaluate it online against the champion."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from components._base import component
from distillery.images import image

SERVING_IMAGE = image("serving")
"""The TensorRT plan is built in the image that serves it: a plan loads only in the TensorRT that built it."""


@component
def export_model_repository(model: Input[Model], dataset: Input[Dataset], config_json: str,
                            model_repository: Output[Artifact], export: Output[Dataset], metrics: Output[Metrics],
                            report: Output[Markdown]) -> None:
    """ONNX export with the parity gate on held-out pairs, written as a Triton model repository."""
    from distillery.pipeline import artifacts
    from distillery.stages._io import config_from_json
    from distillery.stages.export import export as run

    m = run(config_from_json(config_json), model.path, dataset.path, model_repository.path, export.path)
    artifacts.finish(export.path, m, metrics, report, keys=("parity_pairs",))


@component
def deploy_model_repository(model_repository: Input[Artifact], target: str, run_label: str = "") -> str:
    """Publish the repository where Triton serves from (``s3://`` with checksums, or a directory) as its next
    version; ``run_label`` (the operator's run name) is recorded with the version."""
    from distillery.stages.deploy import deploy

    return str(deploy(model_repository.path, target, run_label=run_label)["repository"])


@component
def ab_evaluation(champion: str, challenger: Input[Model], dataset: Input[Dataset], config_json: str, users: int,
                  evaluation: Output[Dataset], metrics: Output[Metrics], report: Output[Markdown]) -> str:
    """Champion vs challenger through Triton and the A/B splitter with simulated users; returns the decision."""
    from distillery.pipeline import artifacts
    from distillery.stages._io import config_from_json
    from distillery.stages.abtest import abtest

    m = abtest(config_from_json(config_json), champion, challenger.path, dataset.path, evaluation.path, users=users,
               progress=False, context={"data": "held-out test queries"})
    artifacts.finish(evaluation.path, m, metrics, report, keys=("users", "srm_p"))
    return str(m["decision"])


@dsl.container_component
def build_tensorrt_plan(model_repository: Input[Artifact], plan_repository: Output[Artifact]) -> dsl.ContainerSpec:
    """The repository with every ``student_trt`` version's fp16 plan built from its plain graph, by the serving
    image's own ``trtexec`` on a GPU (:mod:`distillery.export.plan`; a container step: that image has no kfp)."""
    return dsl.ContainerSpec(image=SERVING_IMAGE, command=["python3", "-m", "distillery.export.plan"],
                             args=["--repo", model_repository.path, "--out", plan_repository.path])
