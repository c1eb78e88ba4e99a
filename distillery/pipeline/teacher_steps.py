"""Pipeline steps of stage 1, the teacher: DAPT, SFT, reward model, DPO, and its evaluation.

Like :mod:`distillery.pipeline.steps`: plain paths in, files and a metrics dict out, no ``kfp``.  Each
training step writes the new teacher (or reward model) directory to ``model_dir`` and its summary
(``metrics.json``, ``report.md``) to ``out_dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distillery.pipeline.steps import PAIRS_FILE, config_from_json, read_pairs, write_metrics

STEPS = ("dapt", "sft", "reward", "dpo")


def _summary_report(out: Path, title: str, summary: dict[str, Any]) -> None:
    rows = [f"| {k} | {v} |" for k, v in summary.items() if not isinstance(v, dict | list)]
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text("\n".join([f"# {title}", "", "| field | value |", "|---|---|", *rows]) + "\n",
                                   encoding="utf-8")


def train_step(step: str, dataset_dir: str | Path, config_json: str, model_dir: str | Path, out_dir: str | Path,
               base: str | None = None, reward_dir: str | None = None) -> dict[str, Any]:
    """One teacher training step on the prepared data (DAPT on the training queries' platform text; SFT,
    reward and DPO on the human-labelled seed pairs), starting from ``base`` (else ``teacher.model``)."""
    from distillery.teacher.trainers import seed_pairs

    if step not in STEPS:
        raise ValueError(f"teacher step {step!r}: must be one of {', '.join(STEPS)}")
    cfg = config_from_json(config_json)
    pairs = read_pairs(Path(dataset_dir) / PAIRS_FILE)
    if step == "dapt":
        from distillery.teacher.dapt import run_dapt

        summary = run_dapt(pairs, cfg, model_dir, base=base)
    else:
        seed, _ = seed_pairs(pairs, cfg)
        if step == "sft":
            from distillery.teacher.sft import run_sft

            summary = run_sft(seed, cfg, model_dir, base=base)
        elif base is None:
            raise ValueError(f"teacher {step}: needs the SFT teacher as its base")
        elif step == "reward":
            from distillery.teacher.reward_step import run_reward

            summary = run_reward(seed, cfg, model_dir, base=base)
        else:
            if reward_dir is None:
                raise ValueError("teacher dpo: needs the reward model")
            from distillery.teacher.dpo import run_dpo

            summary = run_dpo(seed, cfg, model_dir, base=base, reward_dir=reward_dir)
    write_metrics(summary, out_dir)
    _summary_report(Path(out_dir), f"Teacher {step}", summary)
    return summary


def evaluate_teacher(teacher_dir: str | Path, dataset_dir: str | Path, config_json: str, out_dir: str | Path,
                     max_pairs: int, reward_dir: str | None = None) -> dict[str, Any]:
    """The teacher's macro-F1, parse failures and reward per dimension on (up to ``max_pairs``) held-out
    test pairs: the reference the student's retention is measured against."""
    from distillery.teacher.evaluation import evaluate_teacher as run
    from distillery.teacher.inference import load_teacher
    from distillery.teacher.reward import RewardScorer

    cfg = config_from_json(config_json)
    pairs = read_pairs(Path(dataset_dir) / "test.jsonl")
    if max_pairs > 0:
        pairs = pairs[:max_pairs]
    reward = RewardScorer.load(reward_dir, list(cfg.teacher.reward_weights)) if reward_dir else None
    metrics = run(load_teacher(str(teacher_dir), cfg), pairs, reward, progress=False)
    metrics.update(name="teacher", model=str(teacher_dir), split="test")
    out = Path(out_dir)
    write_metrics(metrics, out)
    _summary_report(out, "Teacher on held-out test pairs", metrics)
    return metrics
