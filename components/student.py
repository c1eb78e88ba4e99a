"""Student steps: the fine-tuned baseline, evaluation on held-out queries, the champion's score."""

from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

from components._base import component


@component
def finetune_student(dataset: Input[Dataset], config_json: str, model: Output[Model], training: Output[Dataset],
                     metrics: Output[Metrics], report: Output[Markdown], seed_only: bool = True) -> None:
    """Fine-tune the student on human labels (the seed share: the baseline every distilled student must beat)."""
    from distillery.pipeline import artifacts
    from distillery.stages._io import config_from_json
    from distillery.stages.finetune import finetune

    m = finetune(config_from_json(config_json), dataset.path, training.path, model_dir=model.path,
                 seed_only=seed_only)
    artifacts.finish(training.path, m, metrics, report, keys=("val.macro_f1", "test.macro_f1", "test.accuracy"))


@component
def evaluate_model(model: Input[Model], dataset: Input[Dataset], config_json: str, name: str,
                   evaluation: Output[Dataset], metrics: Output[Metrics], report: Output[Markdown]) -> float:
    """Macro-F1 (returned), per-class figures and confusion matrix of ``model`` on the held-out test queries."""
    from distillery.pipeline import artifacts
    from distillery.stages._io import config_from_json
    from distillery.stages.evaluate import evaluate

    m = evaluate(config_from_json(config_json), model.path, dataset.path, evaluation.path, name)
    artifacts.finish(evaluation.path, m, metrics, report, keys=("macro_f1", "accuracy", "macro_auc_ovr", "ece"))
    return float(m["macro_f1"])


@component
def deployment_gate(student_f1: float, champion_f1: float, baseline_f1: float) -> bool:
    """Whether the student may be deployed: at least as good as the champion and the seed-label baseline."""
    from distillery.pipeline.report import gate

    return bool(gate(student_f1, champion_f1, baseline_f1)["deploy"])


@component
def score_champion(champion: str, dataset: Input[Dataset], config_json: str, evaluation: Output[Dataset]) -> float:
    """Macro-F1 of the serving champion (a model directory or ``s3://`` URI) on the same queries; 0 if none."""
    from distillery.stages._io import config_from_json
    from distillery.stages.evaluate import champion_macro_f1

    return champion_macro_f1(config_from_json(config_json), champion, dataset.path, evaluation.path)


@component
def distill_student(dataset: Input[Dataset], annotations: Input[Dataset], config_json: str, model: Output[Model],
                    training: Output[Dataset], metrics: Output[Metrics], report: Output[Markdown],
                    method: str = "crsd") -> None:
    """Distil the teacher's annotations into the student (CRSD: both views, alignment, in-batch InfoNCE)."""
    from distillery.pipeline import artifacts
    from distillery.stages._io import config_from_json
    from distillery.stages.distill import distill

    m = distill(config_from_json(config_json), dataset.path, annotations.path, training.path, model_dir=model.path,
                method=method)
    artifacts.finish(training.path, m, metrics, report, keys=("val.macro_f1", "test.macro_f1", "test.accuracy"))
