"""Publishing: copy the run's artifacts to a directory or an S3 prefix that other commands read."""

from kfp.dsl import Artifact, Dataset, Input, Model

from components._base import component


@component
def publish_artifacts(uri: str, student: Input[Model], report: Input[Artifact], annotations: Input[Dataset] = None,
                      teacher: Input[Model] = None, model_repository: Input[Artifact] = None,
                      baseline: Input[Model] = None) -> str:
    """Copy each artifact to ``uri/<name>`` (``s3://`` with checksums, credentials from the environment)."""
    import json

    from distillery.stages._io import publish_named

    return json.dumps(publish_named(uri, student=student, report=report, annotations=annotations, teacher=teacher,
                                    model_repository=model_repository, baseline=baseline), sort_keys=True)
