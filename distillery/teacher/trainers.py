"""What every teacher training step shares: seed-pair selection, TRL arguments for CPU or GPU, loss logs."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import torch

from distillery.config import Config, TeacherConfig, TeacherStepConfig
from distillery.data.schema import Pair
from distillery.data.splits import Splits, split_pairs
from distillery.teacher import distributed
from distillery.teacher.model import add_lora, load_for_step, merged, native_bf16


def seed_pairs(pairs: list[Pair] | Splits, cfg: Config) -> tuple[list[Pair], Splits]:
    """The human-labelled seed pairs of the training queries (capped by ``teacher.max_seed_pairs``); ``pairs``
    is split by query unless it is already a split."""
    splits = pairs if isinstance(pairs, Splits) else split_pairs(pairs, cfg.data)
    seed = [p for p in splits.seed if p.label is not None]
    if not seed:
        raise ValueError("the data has no labelled seed pairs (data.seed_fraction of the training queries)")
    cap = cfg.teacher.max_seed_pairs
    if cap and len(seed) > cap:
        seed = random.Random(cfg.teacher.seed).sample(seed, cap)
    return seed, splits


def preference_prompts(seed: list[Pair], cfg: Config) -> list[Pair]:
    """The seed pairs the reward model and DPO sample answers for (``teacher.max_preference_prompts``; the same
    pairs in both steps, so DPO's reward model has seen answers to its prompts)."""
    cap = cfg.teacher.max_preference_prompts
    return random.Random(cfg.teacher.seed + 7).sample(seed, cap) if cap and len(seed) > cap else seed


def use_bf16(tcfg: TeacherConfig) -> bool:
    """Whether training runs under bf16 autocast (``teacher.mixed_precision``)."""
    if tcfg.mixed_precision == "auto":
        return native_bf16(torch.cuda.is_available())
    return tcfg.mixed_precision == "bf16"


def trl_args(step: TeacherStepConfig, tcfg: TeacherConfig, out: str | Path) -> dict[str, Any]:
    """Keyword arguments shared by ``SFTConfig`` and ``DPOConfig``: no checkpoints, logs every step.

    Under torchrun the Hugging Face ``Trainer`` runs data-parallel by itself (accelerate: each process takes its
    own batches, gradients are averaged); the per-process batch and gradient accumulation are set so that
    ``step.batch_size`` stays the effective batch (:func:`distributed.batch_plan`)."""
    cuda = torch.cuda.is_available()
    world = distributed.world_size()
    distributed.preflight(step.step, tcfg, world)
    per_device, accum = distributed.batch_plan(step.step, step.batch_size, world, tcfg.micro_batch_size)
    args: dict[str, Any] = {
        "output_dir": str(Path(out) / "trainer"), "num_train_epochs": step.epochs,
        "max_steps": step.max_steps or -1, "learning_rate": step.lr, "per_device_train_batch_size": per_device,
        "gradient_accumulation_steps": accum,
        "lr_scheduler_type": "linear", "warmup_steps": 0.1, "weight_decay": 0.0, "seed": tcfg.seed,
        "logging_steps": 1, "save_strategy": "no", "report_to": "none", "use_cpu": not cuda,
        # Recomputing activations only saves memory we do not lack for these models, and costs a third more time.
        "gradient_checkpointing": False, "bf16": use_bf16(tcfg), "fp16": False, "dataloader_num_workers": 0,
        "disable_tqdm": not distributed.is_main(),
    }
    if world > 1:
        # Every trainable parameter (the LoRA adapters) takes part in every step: no search for unused ones.
        args.update(ddp_backend="nccl" if cuda else "gloo", ddp_find_unused_parameters=False)
        if tcfg.launch.strategy == "fsdp":
            args.update(fsdp="full_shard auto_wrap", fsdp_config={"version": 2, "state_dict_type": "FULL_STATE_DICT"})
    return args


def batch_layout(args: Any) -> dict[str, int]:
    """How the effective batch was formed from a TRL config: processes × per-process batch × accumulation."""
    return {"processes": distributed.world_size(), "per_process_batch": int(args.per_device_train_batch_size),
            "grad_accumulation": int(args.gradient_accumulation_steps)}


def trained_model(trainer: Any, base: str | None, cfg: Config) -> Any | None:
    """The trained model to save, on rank 0 (``None`` on the other ranks).  Under FSDP every rank gathers the
    sharded parameters and rank 0 puts them into a fresh copy of the model, since a sharded one cannot merge."""
    if not getattr(trainer, "is_fsdp_enabled", False):
        return trainer.model if distributed.is_main() else None
    state = trainer.accelerator.get_state_dict(trainer.model_wrapped)
    return rebuilt(state, base, cfg) if distributed.is_main() else None


def rebuilt(state: dict[str, torch.Tensor], base: str | None, cfg: Config) -> Any:
    """A fresh, unsharded copy of the trained model (base + LoRA) holding the gathered ``state``, merged."""
    _, model, _ = load_for_step(base, cfg)
    model = add_lora(model, cfg.teacher)
    model.load_state_dict(state)
    return merged(model)


def remove_empty(folder: Path) -> None:
    """TRL creates its output folder even when it saves nothing; keep teacher directories clean."""
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def losses(log_history: list[dict[str, Any]]) -> list[float]:
    return [float(r["loss"]) for r in log_history if "loss" in r]


class Timer:
    """Wall time of a block, in seconds."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
