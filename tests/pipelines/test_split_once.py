"""One run splits the data once: the data stage writes the split files and every later stage reads them.

The chain below is the task order of ``distillery run`` (pipelines/end_to_end.py), stage function by stage
function on one prepared dataset directory — what each component does with its ``dataset`` artifact.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

import distillery.annotation.run
import distillery.data
import distillery.data.splits
import distillery.student.finetune
import distillery.teacher.dapt
import distillery.teacher.trainers
from distillery.config import Config, load_config
from distillery.stages import annotate, data, distill, evaluate, finetune, teacher

SMALL = {"teacher": {"max_new_tokens": 8, "max_seed_pairs": 6, "samples_per_prompt": 2, "dapt": {"max_steps": 2},
                     "sft": {"max_steps": 2}, "reward": {"max_steps": 2}, "dpo": {"max_steps": 2}},
         "annotate": {"max_pairs": 8}, "train": {"epochs": 1, "max_steps": 2}}


def count_split_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Replace ``split_pairs`` wherever a loaded module holds it; returns the list its calls append to."""
    original = distillery.data.splits.split_pairs
    calls: list[int] = []

    def counted(pairs: list[Any], cfg: Any) -> Any:
        calls.append(len(pairs))
        return original(pairs, cfg)

    holders = [m for m in list(sys.modules.values()) if getattr(m, "split_pairs", None) is original]
    assert {distillery.data.splits, distillery.data, distillery.student.finetune, distillery.teacher.trainers,
            distillery.teacher.dapt, distillery.annotation.run} <= set(holders)
    for module in holders:
        monkeypatch.setattr(module, "split_pairs", counted)
    return calls


def small_config() -> Config:
    return load_config("tiny", overrides=SMALL)


@pytest.mark.slow
def test_a_run_shaped_chain_splits_the_data_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_split_calls(monkeypatch)
    cfg = small_config()
    prepared = data.prepare(cfg, "synthetic:240", tmp_path / "dataset")
    assert len(calls) == 1
    ds = str(tmp_path / "dataset")
    t = tmp_path / "teacher"
    teacher.train("dapt", cfg, ds, t / "dapt", t / "dapt-out")
    teacher.train("sft", cfg, ds, t / "sft", t / "sft-out", base=str(t / "dapt"))
    teacher.train("reward", cfg, ds, t / "reward", t / "reward-out", base=str(t / "sft"))
    teacher.train("dpo", cfg, ds, t / "dpo", t / "dpo-out", base=str(t / "sft"), reward_dir=str(t / "reward"))
    teacher.evaluate(cfg, t / "dpo", ds, t / "eval", max_pairs=4, reward_dir=str(t / "reward"))
    for shard in annotate.shard_indices(2):
        annotate.annotate_shard(cfg, str(t / "dpo"), ds, shard, 2, tmp_path / f"shard-{shard}",
                                metrics_dir=tmp_path / f"shard-{shard}")
    annotate.merge_dirs([str(tmp_path / "shard-0"), str(tmp_path / "shard-1")], tmp_path / "annotations")
    base = finetune.finetune(cfg, ds, tmp_path / "baseline", model_dir=tmp_path / "baseline-model", seed_only=True)
    student = distill.distill(cfg, ds, tmp_path / "annotations", tmp_path / "training",
                              model_dir=tmp_path / "student", method="crsd")
    evaluate.evaluate(cfg, tmp_path / "student", ds, tmp_path / "student-eval", "student")
    assert evaluate.champion_macro_f1(cfg, "", ds, tmp_path / "champion-eval") == 0.0
    assert len(calls) == 1, f"split_pairs ran {len(calls)} times; only the data stage may split"
    # Every stage saw the data stage's split, and the metrics are written once, where the components expect.
    assert base["split"] == student["split"] == prepared["split"]
    assert (tmp_path / "student" / "distillery.json").is_file() and not (tmp_path / "training" / "model").exists()


def test_later_stages_read_the_split_files_they_are_given(tmp_path: Path) -> None:
    """Drop a query from the seed file by hand: the fine-tune trains on exactly what the file holds."""
    cfg = small_config()
    data.prepare(cfg, "synthetic:240", tmp_path / "dataset")
    seed_file = tmp_path / "dataset" / "seed.jsonl"
    lines = seed_file.read_text().splitlines(keepends=True)
    first = json.loads(lines[0])["query_id"]
    kept = [line for line in lines if json.loads(line)["query_id"] != first]
    seed_file.write_text("".join(kept))
    summary = finetune.finetune(cfg, tmp_path / "dataset", tmp_path / "lexical", method="lexical", seed_only=True)
    assert 0 < len(kept) < len(lines)
    assert summary["train_pairs"] == summary["split"]["seed"]["pairs"] == len(kept)
    assert (tmp_path / "lexical" / "model").is_dir()


def test_a_directory_without_split_files_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a prepared dataset directory"):
        finetune.finetune(small_config(), tmp_path, tmp_path / "out")


def test_a_cli_command_splits_its_data_spec_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from distillery.cli import main

    calls = count_split_calls(monkeypatch)
    assert main(["finetune", "--profile", "tiny", "--method", "lexical", "--data", "synthetic:240",
                 "--out", str(tmp_path / "ft")]) == 0
    assert len(calls) == 1
