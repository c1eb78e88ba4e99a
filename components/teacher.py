"""Teacher steps: DAPT, SFT on reasoning, the multi-dimensional reward model, DPO, and the teacher's evaluation."""

from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

from components._base import component


@component
def dapt(dataset: Input[Dataset], config_json: str, teacher: Output[Model], training: Output[Dataset],
         metrics: Output[Metrics], report: Output[Markdown]) -> None:
    """Domain-adaptive pre-training of ``teacher.model`` on the platform text (held-out perplexity before/after)."""
    from distillery.pipeline import artifacts
    from distillery.stages._io import config_from_json
    from distillery.stages.teacher import train

    m = train("dapt", config_from_json(config_json), dataset.path, teacher.path, training.path)
    artifacts.finish(training.path, m, metrics, report)


@component
def sft(dataset: Input[Dataset], config_json: str, base: Input[Model], teacher: Output[Model],
        training: Output[Dataset], metrics: Output[Metrics], report: Output[Markdown]) -> None:
    """SFT on grounded ``Reasoning: … Label: …`` answers for the human-labelled seed pairs (loss on the answer)."""
    from distillery.pipeline import artifacts
    from distillery.stages._io import config_from_json
    from distillery.stages.teacher import train

    m = train("sft", config_from_json(config_json), dataset.path, teacher.path, training.path, base=base.path)
    artifacts.finish(training.path, m, metrics, report)


@component
def reward_model(dataset: Input[Dataset], config_json: str, base: Input[Model], reward: Output[Model],
                 training: Output[Dataset], metrics: Output[Metrics], report: Output[Markdown]) -> None:
    """Train the multi-dimensional reward model on answers sampled from the SFT teacher."""
    from distillery.pipeline import artifacts
    from distillery.stages._io import config_from_json
    from distillery.stages.teacher import train

    m = train("reward", config_from_json(config_json), dataset.path, reward.path, training.path, base=base.path)
    artifacts.finish(training.path, m, metrics, report)


@component
def dpo(dataset: Input[Dataset], config_json: str, base: Input[Model], reward: Input[Model], teacher: Output[Model],
        training: Output[Dataset], metrics: Output[Metrics], report: Output[Markdown]) -> None:
    """DPO of the SFT teacher on chosen/rejected answers ranked by the reward model."""
    from distillery.pipeline import artifacts
    from distillery.stages._io import config_from_json
    from distillery.stages.teacher import train

    m = train("dpo", config_from_json(config_json), dataset.path, teacher.path, training.path, base=base.path,
              reward_dir=reward.path)
    artifacts.finish(training.path, m, metrics, report)


@component
def evaluate_teacher(teacher: Input[Model], reward: Input[Model], dataset: Input[Dataset], config_json: str,
                     max_pairs: int, evaluation: Output[Dataset], metrics: Output[Metrics],
                     report: Output[Markdown]) -> None:
    """Macro-F1, parse failures and reward per dimension of the teacher on held-out test pairs."""
    from distillery.pipeline import artifacts
    from distillery.stages._io import config_from_json
    from distillery.stages.teacher import evaluate

    m = evaluate(config_from_json(config_json), teacher.path, dataset.path, evaluation.path, max_pairs=max_pairs,
                 reward_dir=reward.path)
    artifacts.finish(evaluation.path, m, metrics, report, keys=("macro_f1", "parse_failure_rate"))
