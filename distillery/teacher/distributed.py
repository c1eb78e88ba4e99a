"""Teacher training on several processes: torch.distributed set-up, the batch plan, DDP/FSDP and torchrun.

One process per device (GPU) or per CPU worker; gloo on CPUs, nccl on GPUs.  Every process holds the same
data and takes its own slice of each global batch, gradients are averaged, and only rank 0 writes.  The
effective batch is the configured ``teacher.<step>.batch_size`` whatever the process count
(per-process batch × processes × gradient accumulation), so a loss curve on 2 processes is comparable with
one on 1.  SFT and DPO run on TRL's trainers, which distribute themselves (Hugging Face ``Trainer`` through
``accelerate``) once torchrun's environment is set; DAPT's own loop uses plain DDP or FSDP2 (:func:`wrap`),
since accelerate shards (FSDP) only on GPUs and FSDP2 also runs on gloo here.

The worker entry point (:data:`WORKER_MODULE`) is started by any torchrun, locally or in a cluster job's pods
(``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``… in the environment)::

    python -m torch.distributed.run --standalone --nproc-per-node 2 -m distillery.stages.teacher_worker \\
        --step sft --config cfg.json --data DATASET_DIR_OR_SPEC --model-dir OUT [--out-dir DIR] \\
        [--base TEACHER_DIR] [--reward REWARD_DIR]

From Python (what ``teacher.launch.launcher=torchrun`` does)::

    from distillery.teacher.distributed import run_torchrun, worker_argv
    run_torchrun(worker_argv("sft", "cfg.json", "/data/ds", "/out/sft"), nproc=2)
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

from distillery.config import TeacherConfig

WORKER_MODULE = "distillery.stages.teacher_worker"
"""The module torchrun starts in every process (``-m``)."""


def in_worker() -> bool:
    """This process was started by torchrun (or a cluster job that sets its environment)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Rank 0 (or a single process): the one process that writes checkpoints, summaries and reports."""
    return rank() == 0


def init() -> None:
    """Join the process group torchrun's environment describes (nccl on GPUs, gloo on CPUs); no-op otherwise."""
    if not in_worker() or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def close() -> None:
    """Leave the process group (a worker that exits with it open makes torch warn of leaked resources)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def device() -> torch.device:
    """This process's device: its GPU (``LOCAL_RANK``) or the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def batch_plan(name: str, batch_size: int, processes: int, micro_batch: int = 0) -> tuple[int, int]:
    """(sequences per forward pass per process, gradient-accumulation steps) so that their product with
    ``processes`` is ``batch_size`` exactly; ``micro_batch`` caps the first (0: no cap)."""
    if batch_size % processes:
        raise ValueError(f"teacher.{name}.batch_size={batch_size}: must be a multiple of the {processes} training "
                         "processes (the effective batch stays the configured one)")
    share = batch_size // processes
    if not micro_batch or micro_batch >= share:
        return share, 1
    if share % micro_batch:
        raise ValueError(f"teacher.micro_batch_size={micro_batch}: must divide teacher.{name}.batch_size / processes"
                         f" = {share}")
    return micro_batch, share // micro_batch


def preflight(step: str, tcfg: TeacherConfig, processes: int) -> None:
    """Fail in one line before any process starts: a batch the processes cannot share evenly, or FSDP where
    the step cannot shard (SFT and DPO shard through accelerate, which does so on GPUs only)."""
    if step == "reward":
        return  # one process (the stage keeps it local)
    batch_plan(step, getattr(tcfg, step).batch_size, processes, tcfg.micro_batch_size)
    if processes > 1 and tcfg.launch.strategy == "fsdp" and step in ("sft", "dpo") and not torch.cuda.is_available():
        raise ValueError(f"teacher.launch.strategy=fsdp: {step} shards through accelerate, which shards on GPUs only; "
                         "use teacher.launch.strategy=ddp on CPUs")


def wrap(model: Any, strategy: str) -> Any:
    """``model`` ready for data-parallel training: DDP (gradients all-reduced) or FSDP2 (parameters sharded
    per decoder layer); unchanged in a single process."""
    if world_size() == 1:
        return model
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for layer in _decoder_layers(model):
            fully_shard(layer)
        return fully_shard(model)
    from torch.nn.parallel import DistributedDataParallel

    ids = [device().index] if torch.cuda.is_available() else None
    return DistributedDataParallel(model, device_ids=ids)


def _decoder_layers(model: Any) -> list[torch.nn.Module]:
    """The repeated blocks FSDP shards one by one (what transformers names ``_no_split_modules``)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(base, "_no_split_modules", None) or [])
    return [m for m in model.modules() if type(m).__name__ in names]


def unwrap(model: Any) -> Any:
    """The module inside a DDP wrapper (FSDP2 shards in place: the model is its own module)."""
    return model.module if hasattr(model, "module") and isinstance(model.module, torch.nn.Module) else model


def full_state_dict(model: Any) -> dict[str, Any]:
    """Every parameter, whole, on rank 0's CPU (empty elsewhere); every rank must call it under FSDP."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=opts)


def mean_over_ranks(value: float) -> float:
    """The mean of ``value`` over the processes (the global loss of a step whose shards are equal in size)."""
    if world_size() == 1 or not dist.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device() if torch.cuda.is_available() else "cpu")
    dist.all_reduce(t)
    return float(t.item()) / world_size()


def barrier() -> None:
    if dist.is_initialized() and world_size() > 1:
        dist.barrier()


def worker_argv(step: str, config: str, data: str, model_dir: str, out_dir: str | None = None,
                base: str | None = None, reward: str | None = None) -> list[str]:
    """The entry point's arguments after torchrun's own: ``-m WORKER_MODULE --step …`` (cluster jobs use it too)."""
    argv = ["-m", WORKER_MODULE, "--step", step, "--config", config, "--data", data, "--model-dir", model_dir]
    for flag, value in (("--out-dir", out_dir), ("--base", base), ("--reward", reward)):
        if value:
            argv += [flag, value]
    return argv


def torchrun_command(argv: Sequence[str], nproc: int, nnodes: int = 1, node_rank: int = 0, master_addr: str = "",
                     master_port: str = "29500") -> list[str]:
    """``python -m torch.distributed.run`` of ``argv`` in ``nproc`` processes on each of ``nnodes`` nodes: one node
    uses ``--standalone`` (a free local rendezvous port), more meet at ``master_addr:master_port`` (the one builder
    of this command line, for a local launch and for every pod of a cluster job)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nnodes), "--nproc-per-node", str(nproc)]
    if nnodes == 1:
        return [*cmd, "--standalone", *argv]
    if not master_addr:
        raise ValueError(f"torchrun on {nnodes} nodes needs the master node's address")
    return [*cmd, "--node-rank", str(node_rank), "--master-addr", master_addr, "--master-port", master_port, *argv]


def run_torchrun(argv: Sequence[str], nproc: int) -> None:
    """Run the worker in ``nproc`` local processes; their output streams through; a failure names the exit code."""
    env = dict(os.environ)
    # torchrun otherwise sets OMP_NUM_THREADS=1 in every worker; keep the caller's thread budget instead.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    code = subprocess.run(torchrun_command(argv, nproc), env=env, check=False).returncode
    if code:
        raise RuntimeError(f"torchrun with {nproc} processes failed (exit code {code}); the worker's error is above")
