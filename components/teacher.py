"""Teacher steps: DAPT, SFT on reasoning, the multi-dimensional reward model, DPO, and the teacher's evaluation."""

from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

from components._base import component


@component
def dapt(dataset: Input[Dataset], config_json: str, teacher: Output[Model], training: Output[Dataset],
         metrics: Output[Metrics], report: Output[Markdown]) -> None:
    """Domain-adaptive pre-training of ``teacher.model`` on the platform text (held-out perplexity before/after)."""
    from distillery.pipeline import artifacts
    from distillery.pipeline.teacher_steps import train_step

    m = train_step("dapt", dataset.path, config_json, teacher.path, training.path)
    artifacts.finish(training.path, m, metrics, report)


@component
def sft(dataset: Input[Dataset], config_json: str, base: Input[Model], teacher: Output[Model],
        training: Output[Dataset], metrics: Output[Metrics], report: Output[Markdown]) -> None:
    """SFT on grounded ``Reasoning: … Label: …`` answers for the human-labelled seed pairs (loss on the answer)."""
    from distillery.pipeline import artifacts
    from distillery.pipeline.teacher_steps import train_step

    m = train_step("sft", dataset.path, config_json, teacher.path, training.path, base=base.path)
    artifacts.finish(training.path, m, metrics, report)


@component
def reward_model(dataset: Input[Dataset], config_json: str, base: Input[Model], reward: Output[Model],
                 training: Output[Dataset], metrics: Output[Metrics], report: Output[Markdown]) -> None:
    """Train the multi-dimensional reward model on answers sampled from the SFT teacher."""
    from distillery.pipeline import artifacts
    from distillery.pipeline.teacher_steps import train_step

    m = train_step("reward", dataset.path, config_json, reward.path, training.path, base=base.path)
    artifacts.finish(training.path, m, metrics, report)


@component
def dpo(dataset: Input[Dataset], config_json: str, base: Input[Model], reward: Input[Model], teacher: Output[Model],
        training: Output[Dataset], metrics: Output[Metrics], report: Output[Markdown]) -> None:
    """DPO of the SFT teacher on chosen/rejected answers ranked by the reward model."""
    from distillery.pipeline import artifacts
    from distillery.pipeline.teacher_steps import train_step

    m = train_step("dpo", dataset.path, config_json, teacher.path, training.path, base=base.path,
                   reward_dir=reward.path)
    artifacts.finish(training.path, m, metrics, report)


@component
def evaluate_teacher(teacher: Input[Model], reward: Input[Model], dataset: Input[Dataset], config_json: str,
                     max_pairs: int, evaluation: Output[Dataset], metrics: Output[Metrics],
                     report: Output[Markdown]) -> None:
    """Macro-F1, parse failures and reward per dimension of the teacher on held-out test pairs."""
    from distillery.pipeline import artifacts
    from distillery.pipeline.teacher_steps import evaluate_teacher as run

    m = run(teacher.path, dataset.path, config_json, evaluation.path, max_pairs, reward_dir=reward.path)
    artifacts.finish(evaluation.path, m, metrics, report, keys=("macro_f1", "parse_failure_rate"))
