"""What this CPU can do, read once from ``/proc/cpuinfo``: the ISA features that decide which precision a
path really runs (bf16 matrix units, int8 dot-product instructions) and the model name every timing is
labelled with.

Stdlib only: Triton's python-backend stub imports it too.  Reports call :func:`describe` so that a figure
measured on an AMX Xeon is never read as one from an AVX2-only EPYC.

``DISTILLERY_CPU_ISA=avx2`` (or ``baseline``) masks the flags down to that level, so that a machine with
AVX-512 takes the code paths of an AVX2-only CPU (fp32 instead of bf16 teacher work, the smaller demo
budget).  It changes only this project's choices; pair it with ``ATEN_CPU_CAPABILITY=avx2``,
``MKL_ENABLE_INSTRUCTIONS=AVX2`` and ``ONEDNN_MAX_CPU_ISA=AVX2`` to restrict PyTorch's own kernels too.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# What each emulated level keeps (``DISTILLERY_CPU_ISA``).
ISA_LEVELS = {"baseline": (), "avx2": ("avx2", "fma")}

# The flags that change a code path here, in the order reports list them.
TRACKED_FLAGS = (
    "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8",
)


@dataclass(frozen=True)
class CpuInfo:
    """The CPU's model name, logical CPU count and the tracked ISA flags it has."""

    model: str
    cpus: int
    flags: tuple[str, ...] = field(default=())
    masked_to: str = ""
    """The ``DISTILLERY_CPU_ISA`` level the flags were masked to ('' when they are the CPU's own)."""

    def has(self, flag: str) -> bool:
        return flag in self.flags

    @property
    def bf16_native(self) -> bool:
        """bf16 matmuls run on hardware units (AMX or AVX512-BF16); elsewhere bf16 is emulated and slower than fp32."""
        return self.has("amx_bf16") or self.has("avx512_bf16")

    @property
    def int8_vnni(self) -> bool:
        """u8×s8 dot products accumulate in int32 (VNNI).  Without it onnxruntime's u8s8 kernels go through
        ``vpmaddubsw``, whose int16 pair sums saturate unless weights use a reduced (7-bit) range."""
        return self.has("avx512_vnni") or self.has("avx_vnni") or self.has("amx_int8")

    @property
    def isa(self) -> str:
        """The widest vector/matrix ISA, as one word: ``amx``, ``avx512``, ``avx2`` or ``baseline``."""
        if self.has("amx_tile"):
            return "amx"
        if self.has("avx512f"):
            return "avx512"
        if self.has("avx2"):
            return "avx2"
        return "baseline"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "flags": list(self.flags), "isa": self.isa, "bf16_native": self.bf16_native,
                "int8_vnni": self.int8_vnni}

    def line(self) -> str:
        """One line for a report: ``AMD EPYC (2 CPUs; avx512, bf16 native, int8 VNNI; flags: avx2 …)``."""
        traits = [self.isa, "bf16 native" if self.bf16_native else "no native bf16",
                  "int8 VNNI" if self.int8_vnni else "no int8 VNNI"]
        masked = f"; masked to {self.masked_to} by DISTILLERY_CPU_ISA" if self.masked_to else ""
        return f"{self.model} ({self.cpus} CPUs; {', '.join(traits)}; flags: {' '.join(self.flags) or 'none'}{masked})"


def parse_cpuinfo(text: str, cpus: int | None = None, mask: str = "") -> CpuInfo:
    """The :class:`CpuInfo` of a ``/proc/cpuinfo`` text (the first processor block names the model), its
    flags limited to those of the ``mask`` level (:data:`ISA_LEVELS`) when one is given."""
    if mask and mask not in ISA_LEVELS:
        raise ValueError(f"DISTILLERY_CPU_ISA={mask!r}: expected one of {', '.join(ISA_LEVELS)}")
    model, flags = "", set[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    if mask:
        flags &= set(ISA_LEVELS[mask])
    return CpuInfo(model or platform.processor() or "unknown CPU", cpus or os.cpu_count() or 1,
                   tuple(f for f in TRACKED_FLAGS if f in flags), mask)


@functools.lru_cache(maxsize=1)
def cpu() -> CpuInfo:
    """This machine's CPU (cached; an unreadable ``/proc/cpuinfo`` gives a CPU with no tracked flags)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    return parse_cpuinfo(text, mask=os.environ.get("DISTILLERY_CPU_ISA", "").strip().lower())


def describe() -> dict[str, Any]:
    """What reports record about the machine that produced their figures."""
    return cpu().to_dict()
