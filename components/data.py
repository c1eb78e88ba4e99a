"""Data preparation: load a data spec and split it by query."""

from kfp.dsl import Dataset, Markdown, Metrics, Output

from components._base import component


@component
def prepare_data(data_spec: str, config_json: str, dataset: Output[Dataset], metrics: Output[Metrics],
                 report: Output[Markdown]) -> None:
    """Load ``data_spec`` and write the seed / logs / val / test splits (by query) as JSONL."""
    from distillery.pipeline import artifacts
    from distillery.stages import data
    from distillery.stages._io import config_from_json

    m = data.prepare(config_from_json(config_json), data_spec, dataset.path)
    artifacts.finish(dataset.path, m, metrics, report, keys=("pairs",))
