"""Fit the demo's teacher work to this machine, so that ``distillery run`` keeps its 20-minute budget on any CPU.

The demo profile's caps (320 seed pairs for SFT and 32 of them for reward and DPO sampling, 3 DAPT steps, 128
annotated pairs, 64 evaluation pairs) were set on CPUs that train and decode the teacher in native bf16 (AMX, or the
AVX512-BF16 of the Zen 4 EPYC where the 320 were measured). A CPU without native bf16 (an AVX2-only EPYC) runs the
same work in fp32 at about half the speed: 22 min 53 s for the whole run, measured. Before the pipeline starts,
:func:`fit_to_machine` times a teacher-shaped matmul chain (SmolLM2-135M's MLP, forward and backward, in the dtype
the teacher will train in, on one thread) for about a second and scales every teacher cap by the largest of
:data:`TIERS` not above ``speed / REFERENCE_GFLOPS``, with floors that keep each stage meaningful. Tiers rather than
the ratio itself, so that the probe's noise (±25% between runs on a shared host) does not change a run's work from
one run to the next. The report says what was measured and which caps changed; ``distillery run --no-fit`` keeps the
caps as configured.

Only the teacher's work is scaled: its stages are ~70% of the demo's time and scale with the work they are
given, while the student's stages are a fixed few minutes on any CPU.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from distillery import hardware
from distillery.config import Config

REFERENCE_GFLOPS = 120.0
"""One-thread probe speed at or above which the demo's caps fit in 20 minutes on 2 cores.  Measured: an AMD
EPYC (Zen 4) with AVX512-BF16 gives 150–210 GFLOP/s in bf16 and 90–110 in fp32 (the speed of an AVX2-only
EPYC, whose run took 22 min 53 s with the full caps); AMX cores are faster still."""

TIERS = (1.0, 0.5, 0.25)
"""The factors the teacher's work is scaled by; a quarter is the floor, below which the stages stop being a
demonstration."""

# SmolLM2-135M's hidden and MLP widths; 256 tokens is one short sequence of a training batch.
_HIDDEN, _MLP, _TOKENS = 576, 1536, 256


@dataclass
class MachineFit:
    """What the probe measured and how the teacher's caps were scaled."""

    cpu: str
    dtype: str
    speed_gflops: float
    reference_gflops: float
    factor: float
    probe_seconds: float
    changes: dict[str, list[int]] = field(default_factory=dict)
    """``field → [configured, fitted]`` for each cap the factor changed."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """The report's section on it."""
        head = (f"Probe: {self.speed_gflops:.0f} GFLOP/s ({self.dtype} teacher-shaped matmuls, "
                f"{self.probe_seconds:.1f} s) on {self.cpu}; reference {self.reference_gflops:.0f} GFLOP/s; "
                f"teacher work × {self.factor:.2f}.")
        if not self.changes:
            return ["", "## Machine fit", "", head, "", "The demo's teacher caps fit this machine as configured."]
        rows = [f"| `{name}` | {old} | {new} |" for name, (old, new) in self.changes.items()]
        return ["", "## Machine fit", "", head, "",
                "The teacher's caps were scaled to keep the run inside its 20-minute budget "
                "(`distillery run --no-fit` keeps them):", "",
                "| cap | configured | this run |", "|---|---|---|", *rows]


def measure_speed(bf16: bool, seconds: float = 1.0) -> float:
    """GFLOP/s of a forward and backward pass through a SmolLM2-shaped MLP block on one thread of this CPU, best
    of the repetitions that fit in ``seconds`` (the best, because a busy sibling vCPU only ever slows one).

    One thread, because two threads on a shared 2-vCPU host measured anywhere from 21 to 330 GFLOP/s: a
    second busy process stalls every thread barrier of a multi-threaded GEMM.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _best_speed(bf16, seconds)
    finally:
        torch.set_num_threads(threads)


def _best_speed(bf16: bool, seconds: float) -> float:
    import torch

    gen = torch.Generator().manual_seed(0)
    up = torch.randn(_HIDDEN, _MLP, generator=gen, requires_grad=True)
    down = torch.randn(_MLP, _HIDDEN, generator=gen, requires_grad=True)
    x = torch.randn(_TOKENS, _HIDDEN, generator=gen)
    flops = 3 * 2 * 2 * _TOKENS * _HIDDEN * _MLP  # two matmuls, forward + two backward products each
    best, reps, start = 0.0, 0, time.perf_counter()
    while reps < 5 or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = torch.nn.functional.silu(x @ up) @ down
        y.float().sum().backward()
        if reps >= 2:  # the first repetitions pay for allocation and kernel selection
            best = max(best, flops / (time.perf_counter() - t) / 1e9)
        reps += 1
    return best


def _scaled(value: int, factor: float, floor: int) -> int:
    return max(min(value, floor), math.ceil(value * factor))


def fit_to_machine(cfg: Config, teacher_eval_pairs: int, speed: float | None = None
                   ) -> tuple[Config, int, MachineFit]:
    """``cfg`` and the teacher-evaluation pair count with the teacher's caps scaled to this machine's speed.

    ``speed`` (GFLOP/s) skips the probe, for tests.  Caps that are off (0: all) stay off: the fit only
    shrinks work that the profile had already bounded.
    """
    from distillery.teacher.trainers import use_bf16

    bf16 = use_bf16(cfg.teacher)
    start = time.perf_counter()
    measured = measure_speed(bf16) if speed is None else speed
    factor = next((t for t in TIERS if measured >= t * REFERENCE_GFLOPS), TIERS[-1])
    fitted = copy.deepcopy(cfg)
    t, changes = fitted.teacher, {}

    def fit(name: str, value: int, floor: int) -> int:
        new = _scaled(value, factor, floor) if value else value
        if new != value:
            changes[name] = [value, new]
        return new

    t.max_seed_pairs = fit("teacher.max_seed_pairs", t.max_seed_pairs, 8)
    t.max_preference_prompts = fit("teacher.max_preference_prompts", t.max_preference_prompts, 8)
    t.dapt_max_texts = fit("teacher.dapt_max_texts", t.dapt_max_texts, 50)
    t.dapt.max_steps = fit("teacher.dapt.max_steps", t.dapt.max_steps, 1)
    fitted.annotate.max_pairs = fit("annotate.max_pairs", fitted.annotate.max_pairs, 64)
    eval_pairs = fit("teacher_eval_pairs", teacher_eval_pairs, 32)
    report = MachineFit(hardware.cpu().line(), "bf16" if bf16 else "fp32", round(measured, 1), REFERENCE_GFLOPS,
                        round(factor, 3), round(time.perf_counter() - start, 2), changes)
    return fitted, eval_pairs, report
