"""Teacher training on several processes (torchrun, gloo on CPU) against one process; any teacher, any dtype.

The 2-process and 1-process runs see the same global batches from the same initial weights, so their per-step
losses differ only by the order of float32 reductions: two half-batch gradients averaged by an all-reduce
instead of one batch's, and each half padded to its own longest row (other matmul shapes).  That moves the
losses by ~1e-6 here; LOSS_TOL = 1e-4 stays two orders above it, and at least 100× below the loss changes the
training itself makes (asserted), so a wrong shard or effective batch cannot pass.  LoRA dropout is off: its
random masks would be drawn differently per process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from distillery.cli import main
from distillery.config import Config, ConfigError, load_config
from distillery.data import load_pairs
from distillery.stages import teacher as stage
from distillery.stages.data import Dataset
from distillery.teacher import distributed
from distillery.teacher.inference import load_teacher
from distillery.teacher.model import load_for_step, quantization

LOSS_TOL = 1e-4
WEIGHT_TOL = 1e-4
SFT = {"max_new_tokens": 12, "max_seed_pairs": 8, "lora_dropout": 0.0,
       "sft": {"max_steps": 4, "lr": 1e-2, "batch_size": 4}}


def cfg_for(procs: int, **launch: object) -> Config:
    launcher = "torchrun" if procs > 1 else "local"
    return load_config("tiny", overrides={"teacher": {**SFT, "launch": {"launcher": launcher,
                                                                         "procs_per_node": procs, **launch}}})


def summary(path: Path, step: str) -> dict[str, Any]:
    return dict(json.loads((path / f"{step}_summary.json").read_text()))


def max_weight_diff(a: Path, b: Path) -> float:
    from transformers import AutoModelForCausalLM

    wa = AutoModelForCausalLM.from_pretrained(a).state_dict()
    wb = AutoModelForCausalLM.from_pretrained(b).state_dict()
    assert set(wa) == set(wb)
    return max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)


def assert_same_curve(one: list[float], two: list[float]) -> None:
    assert len(one) == len(two) > 1
    assert max(abs(x - y) for x, y in zip(one, two, strict=True)) < LOSS_TOL
    assert max(one) - min(one) > 100 * LOSS_TOL  # the steps really trained: the tolerance tells runs apart


@pytest.mark.distributed
def test_sft_on_two_processes_matches_one_and_its_teacher_answers(tmp_path: Path) -> None:
    data, _ = Dataset.from_spec("synthetic:200", cfg_for(1))
    one = stage.train("sft", cfg_for(1), data, tmp_path / "one")
    two = stage.train("sft", cfg_for(2), data, tmp_path / "two")  # the stage's torchrun path, as the CLI takes it
    assert (one["processes"], one["per_process_batch"]) == (1, 4)
    assert (two["processes"], two["per_process_batch"], two["grad_accumulation"]) == (2, 2, 1)
    assert two["weights_dtype"] == "float32" and two["quantize"] == "none"
    assert_same_curve(summary(tmp_path / "one", "sft")["losses"], summary(tmp_path / "two", "sft")["losses"])
    assert max_weight_diff(tmp_path / "one", tmp_path / "two") < WEIGHT_TOL
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["processes"] == 2  # rank 0 wrote it
    teacher = load_teacher(str(tmp_path / "two"), cfg_for(1))
    answers = teacher.answer(load_pairs("synthetic:20")[:3])
    assert len(answers) == 3 and all(abs(sum(a.label_probs) - 1) < 1e-3 and a.generated_tokens > 0 for a in answers)
    assert teacher.meta.steps[-1]["processes"] == 2


@pytest.mark.distributed
def test_dapt_fsdp_on_two_processes_through_the_cli_matches_one(tmp_path: Path) -> None:
    common = ["--data", "synthetic:200", "--profile", "tiny", "--set", "teacher.dapt.max_steps=4",
              "--set", "teacher.dapt.lr=1e-2", "--set", "teacher.lora_dropout=0", "--set", "teacher.dapt_max_texts=120"]
    assert main(["teacher", "dapt", *common, "--out", str(tmp_path / "one")]) == 0
    launch = ["--set", "teacher.launch.launcher=torchrun", "--set", "teacher.launch.procs_per_node=2",
              "--set", "teacher.launch.strategy=fsdp"]
    assert main(["teacher", "dapt", *common, *launch, "--out", str(tmp_path / "two")]) == 0
    one, two = summary(tmp_path / "one", "dapt"), summary(tmp_path / "two", "dapt")
    assert (two["processes"], two["strategy"]) == (2, "fsdp")
    assert_same_curve(one["losses"], two["losses"])
    assert max_weight_diff(tmp_path / "one", tmp_path / "two") < WEIGHT_TOL  # FSDP's shards gathered on rank 0


def test_batch_plan_keeps_the_effective_batch() -> None:
    assert distributed.batch_plan("sft", 8, 1) == (8, 1)
    assert distributed.batch_plan("sft", 8, 2) == (4, 1)
    assert distributed.batch_plan("sft", 16, 2, micro_batch=2) == (2, 4)
    with pytest.raises(ValueError, match=r"^teacher.sft.batch_size=6: must be a multiple of the 4 training"):
        distributed.batch_plan("sft", 6, 4)
    with pytest.raises(ValueError, match=r"^teacher.micro_batch_size=3: must divide"):
        distributed.batch_plan("dpo", 8, 2, micro_batch=3)


def test_worker_argv_is_what_torchrun_runs() -> None:
    argv = distributed.worker_argv("dpo", "c.json", "/d", "/m", base="/b", reward="/r")
    assert argv == ["-m", "distillery.stages.teacher_worker", "--step", "dpo", "--config", "c.json", "--data", "/d",
                    "--model-dir", "/m", "--base", "/b", "--reward", "/r"]
    cmd = distributed.torchrun_command(argv, 2)
    assert cmd[1:8] == ["-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2", "--standalone"]
    assert cmd[8:] == argv
    with pytest.raises(ValueError, match="master node's address"):
        distributed.torchrun_command(argv, 2, nnodes=2)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_qlora_is_refused_without_cuda_in_one_line() -> None:
    cfg = load_config("tiny", overrides={"teacher": {"quantize": "4bit"}})
    with pytest.raises(ValueError, match=r"^teacher.quantize=4bit: QLoRA needs CUDA and the bitsandbytes") as e:
        quantization(cfg.teacher)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"needs teacher\.lora=true"):
        load_config("tiny", overrides={"teacher": {"quantize": "4bit", "lora": False}})


def test_a_teacher_loads_from_s3(tmp_path: Path, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from distillery.storage import copy_tree
    from distillery.teacher.model import meta_for, save_teacher

    monkeypatch.setenv("DISTILLERY_CACHE", str(tmp_path / "cache"))
    cfg = load_config("tiny", overrides={"teacher": {"max_prompt_tokens": 200}})
    tok, model, _ = load_for_step(None, cfg)
    save_teacher(model, tok, meta_for("tiny-from-s3", cfg), tmp_path / "t")
    copy_tree(str(tmp_path / "t"), f"s3://{bucket}/teachers/t")
    _, model2, meta2 = load_for_step(f"s3://{bucket}/teachers/t", load_config("tiny"))
    assert meta2.base == "tiny-from-s3" and meta2.max_prompt_tokens == 200  # the directory's own settings
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), model2.state_dict().values(),
                                                  strict=True))
    teacher = load_teacher(f"s3://{bucket}/teachers/t", load_config("tiny"))  # what annotation and evaluation use
    assert teacher.meta.max_prompt_tokens == 200 and teacher.identity()["model"] == f"s3://{bucket}/teachers/t"


def test_worker_config_that_is_not_json_names_the_file(tmp_path: Path) -> None:
    from distillery.stages.teacher_worker import read_config

    bad = tmp_path / "config.json"
    bad.write_text('{"profile": "tiny",')
    with pytest.raises(SystemExit, match=rf"^{bad}: not valid JSON"):
        read_config(str(bad))
    with pytest.raises(SystemExit, match=r"^--config text: not valid JSON"):
        read_config('{"profile": ')
    assert read_config('{"profile": "tiny"}').profile == "tiny"
