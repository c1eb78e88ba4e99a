"""Teacher stage: DAPT → SFT → reward model → DPO on the split's training queries, and the teacher's evaluation.

The CLI (``distillery teacher dapt|sft|reward|dpo|evaluate``) and the pipeline's teacher components call
:func:`train` and :func:`evaluate` / :func:`evaluate_spec`; the training itself lives in
``distillery.teacher.{dapt,sft,reward_step,dpo}``.

CPU commands (tiny profile, seconds each)::

    distillery teacher dapt --data synthetic:300 --out /tmp/t/dapt --profile tiny
    distillery teacher sft --data synthetic:300 --base /tmp/t/dapt --out /tmp/t/sft --profile tiny
    distillery teacher reward --data synthetic:300 --base /tmp/t/sft --out /tmp/t/reward --profile tiny
    distillery teacher dpo --data synthetic:300 --base /tmp/t/sft --reward /tmp/t/reward --out /tmp/t/dpo --profile tiny
    distillery teacher evaluate --model /tmp/t/dpo --data synthetic:100 --out /tmp/t/eval.json --profile tiny
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distillery.config import Config
from distillery.stages._io import table_report, write_metrics
from distillery.stages.data import Dataset, DatasetLike, open_dataset

if TYPE_CHECKING:
    from distillery.data.schema import Pair
    from distillery.data.splits import Splits

Trainer = Callable[["Splits", Config, Path, "str | None", "str | None"], dict[str, Any]]


def _dapt(splits: Splits, cfg: Config, out: Path, base: str | None, reward: str | None) -> dict[str, Any]:
    from distillery.teacher.dapt import run_dapt

    return run_dapt(splits, cfg, out, base=base)  # the training queries' platform text


def _sft(splits: Splits, cfg: Config, out: Path, base: str | None, reward: str | None) -> dict[str, Any]:
    from distillery.teacher.sft import run_sft
    from distillery.teacher.trainers import seed_pairs

    return run_sft(seed_pairs(splits, cfg)[0], cfg, out, base=base)


def _reward(splits: Splits, cfg: Config, out: Path, base: str | None, reward: str | None) -> dict[str, Any]:
    from distillery.teacher.reward_step import run_reward
    from distillery.teacher.trainers import preference_prompts, seed_pairs

    assert base is not None  # checked by train()
    return run_reward(preference_prompts(seed_pairs(splits, cfg)[0], cfg), cfg, out, base=base)


def _dpo(splits: Splits, cfg: Config, out: Path, base: str | None, reward: str | None) -> dict[str, Any]:
    from distillery.teacher.dpo import run_dpo
    from distillery.teacher.trainers import preference_prompts, seed_pairs

    assert base is not None and reward is not None  # checked by train()
    return run_dpo(preference_prompts(seed_pairs(splits, cfg)[0], cfg), cfg, out, base=base, reward_dir=reward)


STEPS: dict[str, Trainer] = {"dapt": _dapt, "sft": _sft, "reward": _reward, "dpo": _dpo}
"""The training steps in pipeline order; SFT, reward and DPO train on the human-labelled seed pairs."""


def train(step: str, cfg: Config, data: DatasetLike, model_dir: str | Path, out_dir: str | Path | None = None, *,
          base: str | None = None, reward_dir: str | None = None) -> dict[str, Any]:
    """One teacher training step, starting from ``base`` (else ``teacher.model``; reward and DPO need the SFT
    teacher).  The new teacher (or reward model) goes to ``model_dir``; ``metrics.json`` and ``report.md`` to
    ``out_dir`` (default: ``model_dir``).  Returns the step's summary.

    Where it runs is ``teacher.launch.launcher``: ``local`` here; ``torchrun`` in ``procs_per_node`` local
    processes (the reward model, a 22M-parameter encoder, stays local); ``trainjob``/``pytorchjob`` as a
    Kubeflow job (:func:`distillery.teacher.jobs.run_cluster_job`).  A process that torchrun started always
    trains itself, whatever the launcher: it is one of those processes."""
    if step not in STEPS:
        raise ValueError(f"teacher step {step!r}: must be one of {', '.join(STEPS)}")
    if step in ("reward", "dpo") and not base:
        raise ValueError(f"teacher {step}: --base (the SFT teacher directory) is required")
    if step == "dpo" and not reward_dir:
        raise ValueError("teacher dpo: --reward (the reward model directory) is required")
    from distillery.teacher import distributed

    launcher = cfg.teacher.launch.launcher
    if distributed.in_worker() or launcher == "local" or (launcher == "torchrun" and step == "reward"):
        return _train_here(step, cfg, data, Path(model_dir), out_dir, base, reward_dir)
    if launcher == "torchrun":
        return _train_torchrun(step, cfg, data, Path(model_dir), out_dir, base, reward_dir)
    import tempfile

    from distillery.teacher.jobs import run_cluster_job

    with tempfile.TemporaryDirectory(prefix="teacher-job-") as tmp:
        if isinstance(data, Dataset) and data.directory is None:  # the job's pods cannot read a spec's local file
            data = _write_splits(data, Path(tmp) / "data")
        return run_cluster_job(step, cfg, data, model_dir, out_dir, base=base, reward_dir=reward_dir)


def _train_here(step: str, cfg: Config, data: DatasetLike, model_dir: Path, out_dir: str | Path | None,
                base: str | None, reward_dir: str | None) -> dict[str, Any]:
    """The step in this process (one of several under torchrun: only rank 0 writes)."""
    from distillery.teacher import distributed

    distributed.init()
    if step == "reward" and not distributed.is_main():
        return {}  # one encoder on one device: the other ranks of a cluster job have nothing to do
    splits = open_dataset(data).splits
    summary = STEPS[step](splits, cfg, model_dir, base, reward_dir)
    if distributed.is_main():
        out = Path(out_dir if out_dir is not None else model_dir)
        write_metrics(summary, out)
        table_report(out, f"Teacher {step}", summary)
    return summary


def _train_torchrun(step: str, cfg: Config, data: DatasetLike, model_dir: Path, out_dir: str | Path | None,
                    base: str | None, reward_dir: str | None) -> dict[str, Any]:
    """The step in ``teacher.launch.procs_per_node`` processes on this machine; returns rank 0's summary."""
    import json
    import tempfile

    from distillery.stages._io import config_to_json
    from distillery.teacher.distributed import preflight, run_torchrun, worker_argv

    preflight(step, cfg.teacher, cfg.teacher.launch.procs_per_node)
    ds = open_dataset(data)
    out = Path(out_dir if out_dir is not None else model_dir)
    with tempfile.TemporaryDirectory(prefix="teacher-torchrun-") as tmp:
        cfg_file = Path(tmp) / "config.json"
        cfg_file.write_text(config_to_json(cfg), encoding="utf-8")
        data_dir = str(ds.directory) if ds.directory is not None else _write_splits(ds, Path(tmp) / "data")
        argv = worker_argv(step, str(cfg_file), data_dir, str(model_dir), str(out), base, reward_dir)
        run_torchrun(argv, cfg.teacher.launch.procs_per_node)
    result: dict[str, Any] = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    return result


def _write_splits(ds: Dataset, folder: Path) -> str:
    """The split as a prepared dataset directory, so that every process trains on exactly this split."""
    from distillery.data import write_jsonl
    from distillery.stages._io import PAIRS_FILE, SPLIT_FILES

    folder.mkdir(parents=True)
    splits = ds.splits
    for name in SPLIT_FILES:
        write_jsonl(getattr(splits, name), folder / f"{name}.jsonl")
    write_jsonl([p for name in SPLIT_FILES for p in getattr(splits, name)], folder / PAIRS_FILE)
    return str(folder)


def _score(cfg: Config, teacher: str, pairs: list[Pair], reward_dir: str | None, progress: bool) -> dict[str, Any]:
    from distillery.teacher.evaluation import evaluate_teacher
    from distillery.teacher.protocol import open_teacher
    from distillery.teacher.reward import RewardScorer

    reward = RewardScorer.load(reward_dir, list(cfg.teacher.reward_weights)) if reward_dir else None
    return evaluate_teacher(open_teacher(teacher, cfg), pairs, reward, progress=progress)


def evaluate(cfg: Config, teacher: str | Path, data: DatasetLike, out_dir: str | Path, *, max_pairs: int = 0,
             reward_dir: str | None = None) -> dict[str, Any]:
    """The teacher's macro-F1, parse failures and reward per dimension on (up to ``max_pairs``) held-out test
    pairs: the reference the student's retention is measured against.  Writes ``metrics.json``, ``report.md``."""
    pairs = open_dataset(data).part("test")
    if max_pairs > 0:
        pairs = pairs[:max_pairs]
    metrics = _score(cfg, str(teacher), pairs, reward_dir, progress=False)
    metrics.update(name="teacher", model=str(teacher), split="test")
    write_metrics(metrics, out_dir)
    table_report(out_dir, "Teacher on held-out test pairs", metrics, skip=("examples",))
    return metrics


def evaluate_spec(cfg: Config, teacher: str, data_spec: str, out_file: str | Path, *, max_pairs: int = 0,
                  reward_dir: str | None = None) -> dict[str, Any]:
    """The same figures on (the first ``max_pairs`` of) every row of ``data_spec``, written to ``out_file``."""
    from distillery.data.spec import load
    from distillery.evaluate import write_json

    pairs, _ = load(data_spec, synthetic_noise=cfg.data.synthetic_noise)
    if max_pairs > 0:
        pairs = pairs[:max_pairs]
    metrics = _score(cfg, teacher, pairs, reward_dir, progress=True)
    metrics.update(model=str(teacher), data=data_spec)
    write_json(metrics, out_file)
    return metrics
