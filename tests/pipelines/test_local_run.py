"""`distillery run` end to end on KFP's local runner with the tiny profile: every stage's outputs exist,
the report's numbers are the stages' own, a rerun reuses the cache, and a failing task is named.

Every stage runs for real: the teacher's DAPT, SFT, reward model and DPO (two optimiser steps each on
eight seed pairs), its evaluation, sharded annotation and merge, distillation, the seed-label baseline,
evaluation, export with its parity gate, the gated deployment, the report.  The tiny profile's teacher
is a random-init Llama that two steps cannot teach to write ``Label:``; every annotation still gets a label,
read at an appended ``Label:`` position, and the report gives the reasoning/label agreement. Labels no text
argued for are left out of distillation by default, so the default CRSD student falls back to the seed labels
and the run says so (CRSD on every annotation: tests/crsd).  The run serves int8 (``--set export.int8=true``)
to show that every ``export.*`` setting reaches the pipeline's export step.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from distillery.cli import main

# The whole pipeline runs in the module fixture: minutes, more when the 2 cores are shared.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1500)]

# Small budgets keep the run within minutes on 2 cores: 16 log pairs to annotate, 8 short answers
# per teacher sample, 2 optimiser steps per teacher step on 8 seed pairs.
TINY = ["--profile", "tiny", "--data", "synthetic:480", "--teacher-eval-pairs", "8",
        # The random-init student's logits are nearly tied, so its int8 copy is gated on nothing but running.
        *[x for kv in ("export.int8=true", "export.int8_min_agreement=0",
                       "annotate.max_pairs=16", "teacher.max_new_tokens=8", "teacher.max_seed_pairs=8",
                       "teacher.dapt.max_steps=2", "teacher.sft.max_steps=2", "teacher.reward.max_steps=2",
                       "teacher.dpo.max_steps=2") for x in ("--set", kv)]]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("run")
    assert main(["run", *TINY, "--out", str(out)]) == 0
    return out, json.loads((out / "metrics.json").read_text())


def _stage_dirs(root: Path) -> dict[str, Path]:
    """The newest output directory of each task under the pipeline root."""
    runs = sorted((root / "pipeline_root").glob("relevance-distillery-*"))
    found: dict[str, Path] = {}
    for run in runs:
        for task_dir in run.iterdir():
            found[task_dir.name] = task_dir
    return found


def test_every_stage_output_exists(tiny_run: tuple[Path, dict[str, Any]]) -> None:
    out, metrics = tiny_run
    for name in ("report.md", "metrics.json", "pipeline.log", "models.png"):
        assert (out / name).is_file(), name
    assert set(metrics["artifacts"]) >= {"teacher", "annotations", "student", "model_repository"}
    stages = _stage_dirs(out)
    data = stages["prepare-data"] / "dataset"
    for part in ("pairs", "seed", "logs", "val", "test"):
        assert (data / f"{part}.jsonl").stat().st_size > 0, part
    student = Path(metrics["artifacts"]["student"])
    assert (student / "distillery.json").is_file() and (student / "config.json").is_file()
    teacher = Path(metrics["artifacts"]["teacher"])
    assert (teacher / "config.json").is_file() and (stages["dpo"] / "teacher").samefile(teacher)
    for step in ("dapt", "sft", "reward-model", "dpo"):
        assert (stages[step] / "training" / "metrics.json").is_file(), step
    assert metrics["stages"]["teacher_eval"]["n"] == 8
    for task in ("finetune-student", "distill-student"):
        assert (stages[task] / "training" / "training_curves.png").is_file(), task
    annotations = Path(metrics["artifacts"]["annotations"])
    records = [json.loads(line) for line in annotations.read_text().splitlines()]
    assert len(records) == 16 == metrics["stages"]["annotations"]["records"]
    assert len({(r["query_id"], r["item_id"]) for r in records}) == 16  # each pair once across the 2 shards
    shard_dirs = [d for d in (out / "pipeline_root").rglob("annotate-shard/annotations") if d.is_dir()]
    assert len(shard_dirs) == 2
    repo = Path(metrics["artifacts"]["model_repository"])
    assert (repo / "relevance" / "config.pbtxt").is_file()
    # no champion yet, so the seed-label baseline decides; a deployed copy is byte-for-byte the exported repository
    from distillery.storage import dir_manifest

    g = metrics["gate"]
    baseline = json.loads((stages["evaluate-model-2"] / "evaluation" / "metrics.json").read_text())
    assert metrics["stages"]["baseline_eval"] == baseline and g["baseline_macro_f1"] == baseline["macro_f1"]
    assert g["deploy"] == (g["student_macro_f1"] >= g["baseline_macro_f1"])
    if g["deploy"]:
        assert metrics["deployed"] == str(out / "serving")
        served, exported = dir_manifest(out / "serving"), dir_manifest(repo)
        # besides, the serving repository's manifest records where each version came from (student_uri, run)
        assert served.keys() == exported.keys()
        assert {k: v for k, v in served.items() if k != "distillery-repository.json"} == \
            {k: v for k, v in exported.items() if k != "distillery-repository.json"}
    else:
        assert metrics["deployed"] is None and not (out / "serving").exists()
        assert g["better"] == "seed-label baseline" and "**do not deploy**" in (out / "report.md").read_text()
    assert (Path(metrics["artifacts"]["baseline"]) / "distillery.json").is_file()
    for png in metrics["plots"]:
        assert (out / png).is_file(), png
    for key, value in metrics["artifacts"].items():
        assert (value is None and key in metrics["missing"]) or Path(value).exists(), key


def test_report_numbers_come_from_the_stage_outputs(tiny_run: tuple[Path, dict[str, Any]]) -> None:
    from distillery.data.schema import get_label_set, label_indices
    from distillery.evaluate import compute_metrics
    from distillery.stages._io import read_pairs
    from distillery.student.predictor import Classifier

    out, metrics = tiny_run
    stages = _stage_dirs(out)
    evaluated = json.loads((stages["evaluate-model"] / "evaluation" / "metrics.json").read_text())
    assert metrics["stages"]["student_eval"] == evaluated
    assert metrics["gate"]["student_macro_f1"] == evaluated["macro_f1"]
    report = (out / "report.md").read_text()
    row = f"| student (crsd) | {evaluated['n']} | {evaluated['macro_f1']:.4f} | {evaluated['accuracy']:.4f} |"
    assert row in report
    teacher = json.loads((stages["evaluate-teacher"] / "evaluation" / "metrics.json").read_text())
    assert metrics["stages"]["teacher_eval"] == teacher
    row = f"| teacher (held-out test pairs, label-position argmax) | {teacher['n']} | {teacher['macro_f1']:.4f} |"
    assert row in report
    exported = json.loads((stages["export-model-repository"] / "export" / "metrics.json").read_text())
    assert metrics["stages"]["export"] == exported and exported["parity_pairs"] == evaluated["n"]
    assert f"{exported['parity'][0]['max_abs_diff']:.2e}" in report
    sizes = json.loads((stages["prepare-data"] / "dataset" / "metrics.json").read_text())["split"]
    assert f"| test | {sizes['test']['queries']} | {sizes['test']['pairs']} |" in report
    # and the stage's figure is what the student artifact really scores on the test split
    clf = Classifier(metrics["artifacts"]["student"])
    test = read_pairs(stages["prepare-data"] / "dataset" / "test.jsonl")
    probs = clf.predict_proba(test)
    again = compute_metrics(label_indices(test, get_label_set(clf.meta.label_set)), probs.argmax(axis=1),
                            clf.classes, probs)
    assert again["macro_f1"] == pytest.approx(evaluated["macro_f1"], abs=1e-9)
    assert evaluated["n"] == sizes["test"]["pairs"]


def test_rerun_reuses_cached_tasks_and_publishes_to_s3(tiny_run: tuple[Path, dict[str, Any]], bucket: str) -> None:
    from distillery import storage

    out, first = tiny_run
    uri = f"s3://{bucket}/runs/tiny"
    champion = first["artifacts"]["student"]  # now serving: the rerun's student must match it
    assert main(["run", *TINY, "--out", str(out), "--publish", uri, "--champion", champion, "--ab-users", "400"]) == 0
    second = json.loads((out / "metrics.json").read_text())
    assert {"prepare-data", "dapt", "sft", "reward-model", "dpo", "evaluate-teacher", "annotate-shard",
            "merge-annotations", "distill-student", "finetune-student", "export-model-repository",
            "evaluate-model"} <= set(second["run"]["cached_tasks"])
    assert second["stages"]["student_eval"] == first["stages"]["student_eval"]
    # the same model as champion: a tie with the champion, so the seed-label baseline decides as in the first run;
    # when it deploys, the A/B test runs through Triton (tests/abtest covers that stage on its own too)
    assert second["gate"]["champion_macro_f1"] == second["gate"]["student_macro_f1"]
    assert second["gate"]["deploy"] == first["gate"]["deploy"]
    if second["gate"]["deploy"]:
        assert second["abtest"]["decision"] in ("promote", "rollback", "continue")
        assert sum(second["abtest"]["users"].values()) > 0 and "## A/B evaluation" in (out / "report.md").read_text()
    else:
        assert second["abtest"] is None and second["deployed"] is None
    assert not {"dpo", "finetune-student", "distill-student", "annotate-shard"} & set(second["run"]["task_seconds"])
    # the pipeline's publish step put the student and the report in the bucket, with checksums
    assert second["published"]["student"] == f"{uri}/student"
    back = storage.fetch(second["published"]["student"], out / "fetched")
    assert storage.dir_manifest(back) == storage.dir_manifest(first["artifacts"]["student"])
    repo = storage.fetch(second["published"]["model_repository"], out / "fetched")
    assert storage.dir_manifest(repo) == storage.dir_manifest(first["artifacts"]["model_repository"])
    assert second["published"]["teacher"] == f"{uri}/teacher"
    assert second["published"]["annotations"] == f"{uri}/annotations/annotations.jsonl"
    report = storage.fetch(second["published"]["report"], out / "fetched")
    assert json.loads((report / "metrics.json").read_text())["gate"] == second["gate"]


def test_a_failing_task_stops_the_run_with_its_name_and_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                              ) -> None:
    missing = tmp_path / "nope.jsonl"
    assert main(["run", "--profile", "tiny", "--data", f"jsonl:{missing}", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert re.search(r"task 'prepare-data' failed .*nope\.jsonl", err), err
    assert "finetune-student" not in err


def test_int8_export_and_label_by_construction_reach_the_run(tiny_run: tuple[Path, dict[str, Any]]) -> None:
    out, metrics = tiny_run
    repo = Path(metrics["artifacts"]["model_repository"])
    runtime = json.loads((repo / "student" / "1" / "runtime.json").read_text())
    assert runtime["precision"] == "int8" and runtime["quantization"]["reduce_range"] is True
    assert metrics["stages"]["export"]["precision"] == "int8"
    # Every annotation has a label; none of the tiny teacher's texts argued for one, so CRSD (drop_parse_errors,
    # the default) leaves them out and falls back to the seed labels, and says so.
    assert metrics["stages"]["annotations"]["parse_failures"] == 0
    assert "reasoning/label agreement" in (out / "report.md").read_text()
    assert metrics["stages"]["student"]["counts"]["teacher_fallback"] == 1
    assert "The teacher gave no usable label" in (_stage_dirs(out)["distill-student"] / "training" / "report.md"
                                                   ).read_text()
