"""The run report and the progress lines, without running a pipeline."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from distillery.pipeline import artifacts, report, run
from distillery.pipeline.progress import TaskLog
from distillery.stages._io import config_from_json, config_to_json


def _metrics(f1: float, n: int = 10) -> dict:
    return {"n": n, "accuracy": f1, "macro_f1": f1, "macro_auc_ovr": 0.5, "ece": 0.1, "classes": ["A", "B"],
            "per_class": {"A": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 5},
                          "B": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 5}},
            "confusion": [[5, 0], [5, 0]]}


def _stage(tmp: Path, name: str, metrics: dict) -> Path:
    d = tmp / name
    d.mkdir()
    (d / "metrics.json").write_text(json.dumps(metrics))
    return d


def test_report_is_built_from_the_stage_files(tmp_path: Path) -> None:
    dirs = {"data": _stage(tmp_path, "data", {"data": "synthetic:9", "pairs": 9,
                                              "split": {"test": {"queries": 2, "pairs": 9}}}),
            "student_eval": _stage(tmp_path, "s", _metrics(0.61234)),
            "champion_eval": _stage(tmp_path, "c", _metrics(0.7))}
    outputs = report.StageOutputs(dirs={k: str(v) for k, v in dirs.items()},
                                  artifacts={"student": "s3://b/student"}, missing={"teacher": "not built"})
    m = report.assemble(outputs, tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| student | 10 | 0.6123 | 0.6123 |" in text and "| champion | 10 | 0.7000 |" in text
    assert m["gate"]["deploy"] is False and m["gate"]["better"] == "champion"
    assert "**do not deploy**: student 0.6123 < champion 0.7000: the champion is the better model" in text
    assert m["artifacts"] == {"teacher": None, "annotations": None, "student": "s3://b/student", "baseline": None,
                              "model_repository": None}
    assert "teacher: not built" in text and (tmp_path / "out" / "models.png").is_file()


def test_gate_deploys_on_a_tie() -> None:
    assert report.gate(0.5, 0.5)["deploy"] and not report.gate(0.49, 0.5)["deploy"]


def test_gate_never_ships_a_student_below_its_seed_label_baseline() -> None:
    """No champion yet (0.0) used to mean "deploy": a run whose student is worse than fine-tuning on the human
    seed labels alone must not ship it, and must name the better model."""
    g = report.gate(0.47, 0.0, 0.69)
    assert not g["deploy"] and g["better"] == "seed-label baseline"
    assert g["reason"] == "student 0.4700 < seed-label baseline 0.6900: the seed-label baseline is the better model"
    both = report.gate(0.4, 0.6, 0.5)
    assert not both["deploy"] and both["better"] == "champion" and "champion 0.6000 and seed-label" in both["reason"]
    ok = report.gate(0.7, 0.6, 0.7)
    assert ok["deploy"] and "better" not in ok and ok["baseline_macro_f1"] == 0.7


def test_missing_stage_metrics_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"wrote no metrics\.json"):
        report.load_metrics(tmp_path)


def test_finish_writes_the_metrics_file_and_scalars(tmp_path: Path) -> None:
    logged: dict[str, float] = {}
    art = SimpleNamespace(path=str(tmp_path / "m" / "metrics"), log_metric=logged.__setitem__)
    rep = SimpleNamespace(path=str(tmp_path / "r" / "report"))
    (tmp_path / "report.md").write_text("# hi\n")
    artifacts.finish(tmp_path, {"test": {"macro_f1": 0.5, "n": 3}, "ok": True, "name": "x"}, art, rep,
                     keys=("test.macro_f1",))
    assert json.loads(Path(art.path).read_text())["test"]["macro_f1"] == 0.5  # a file: KFP's cache needs it
    assert logged == {"test.macro_f1": 0.5}
    assert Path(rep.path).read_text() == "# hi\n"
    assert artifacts.canonical_uri("minio://mlpipeline/v2/x") == "s3://mlpipeline/v2/x"


def test_config_travels_as_json_or_a_profile_name(tiny_config) -> None:  # type: ignore[no-untyped-def]
    assert config_from_json(config_to_json(tiny_config)) == tiny_config
    assert config_from_json("tiny") == tiny_config


def _log(lines: list[str]) -> tuple[TaskLog, io.StringIO]:
    term = io.StringIO()
    sink = TaskLog(io.StringIO(), term)
    for line in lines:
        sink.write(line + "\n")
    return sink, term


def test_progress_lines_and_the_error_of_a_failed_task() -> None:
    sink, term = _log(["12:00:00.1 - INFO - Executing task \x1b[96m'train'\x1b[0m", "    epoch 1",
                       "    Traceback (most recent call last):", "    distillery.data.schema.DataError: x.jsonl:3: bad",
                       "12:00:01.0 - ERROR - Task \x1b[96m'train'\x1b[0m finished with status \x1b[91mFAILURE\x1b[0m",
                       "INFO:root:Task prep cache hit (key=abc); skipping execution."])
    shown = term.getvalue()
    assert "▶ train" in shown and "✗ train failed" in shown and "DataError: x.jsonl:3: bad" in shown
    assert "↺ prep (reused from the cache)" in shown and "epoch 1" not in shown
    assert sink.events.failed == ["train"] and sink.events.cached == ["prep"]
    msg = "Pipeline 'p' finished with status FAILURE. Inner task failed: 'train' inside 'dag'."
    err = run.failure(RuntimeError(msg), sink.events, "log.txt")
    assert str(err).startswith("task 'train' failed (train inside dag): distillery.data.schema.DataError: x.jsonl:3")


def test_output_of_parallel_tasks_goes_to_the_task_on_its_thread() -> None:
    sink = TaskLog(io.StringIO(), io.StringIO())

    def task(name: str) -> None:
        sink.write(f"Executing task '{name}'\n")
        for i in range(50):
            sink.write(f"{name} line {i}\n")

    threads = [threading.Thread(target=task, args=(n,)) for n in ("shard-0", "shard-1")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in ("shard-0", "shard-1"):
        assert all(line.startswith(name) for line in sink.events.tails[name])


def test_step_argument_errors_are_clear(tmp_path: Path) -> None:
    from distillery.stages.annotate import shard_indices
    from distillery.stages.deploy import deploy
    from distillery.stages.teacher import train

    assert shard_indices(3) == [0, 1, 2]
    with pytest.raises(ValueError, match="at least one annotation shard"):
        shard_indices(0)
    with pytest.raises(ValueError, match="no target given"):
        deploy(tmp_path, "")
    with pytest.raises(ValueError, match="must be one of dapt, sft, reward, dpo"):
        train("ppo", config_from_json("tiny"), tmp_path, tmp_path / "m", tmp_path / "o")


def test_published_locations_follow_the_artifacts_map(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text(json.dumps({"artifacts": {
        "teacher": "/t", "annotations": "/a/annotations.jsonl", "student": "/s", "model_repository": None}}))
    got = run.published_locations(tmp_path, "s3://bkt/runs/1/")
    assert got == {"teacher": "s3://bkt/runs/1/teacher", "annotations": "s3://bkt/runs/1/annotations/annotations.jsonl",
                   "student": "s3://bkt/runs/1/student", "report": "s3://bkt/runs/1/report"}


def test_run_report_names_the_cpu_and_the_precision_each_stage_ran() -> None:
    from distillery.pipeline.report import _annotation_lines, _export_lines

    hw = {"model": "AMD EPYC 7R32", "isa": "avx2", "bf16_native": False, "int8_vnni": False, "masked_to": ""}
    exp = {"version": 2, "precision": "fp32", "requested_precision": "int8", "parity_pairs": 10, "hardware": hw,
           "parity": [{"name": "onnx int8", "ran": "int8", "max_abs_diff": 0.9, "agreement": 0.4, "passed": False}],
           "refused": [{"precision": "int8", "graph": "onnx int8", "reason": "agreement 40.00% < 90.00%"}]}
    text = "\n".join(_export_lines(exp))
    assert "serves fp32 (requested int8)" in text and "AMD EPYC 7R32 (avx2; native bf16 no, int8 VNNI no)" in text
    assert "| onnx int8 | int8 |" in text and "refused int8 (onnx int8): agreement 40.00% < 90.00%" in text
    ann = {"records": 4, "shards": 1, "parse_failures": 0, "labels": {}, "pairs_per_second": 1.0,
           "pairs_per_second_all_shards": 1.0, "generated_tokens_per_second": 9.0,
           "decoder_dtype": ["float32"], "hardware": ["AMD EPYC 7R32 (2 CPUs; avx2, no native bf16)"]}
    assert "Decoder precision float32 on AMD EPYC 7R32" in "\n".join(_annotation_lines(ann))
