"""CPU feature detection: what decides bf16 and int8 paths, and the masking that emulates an AVX2-only CPU."""

from __future__ import annotations

import pytest

from distillery import hardware

ZEN4 = """processor\t: 0
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni avx512_bf16 avx512bw
processor\t: 1
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni avx512_bf16 avx512bw
"""
SAPPHIRE = ("model name\t: Intel(R) Xeon(R) Platinum 8488C\n"
            "flags\t: avx2 fma avx512f avx512_vnni avx512_bf16 amx_tile amx_bf16 amx_int8\n")
ROME = "model name\t: AMD EPYC 7R32\nflags\t: sse2 avx avx2 fma\n"


def test_parse_reads_model_and_tracked_flags() -> None:
    info = hardware.parse_cpuinfo(ZEN4, cpus=2)
    assert info.model == "AMD EPYC 9R14" and info.cpus == 2
    assert info.flags == ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16")
    assert (info.isa, info.bf16_native, info.int8_vnni) == ("avx512", True, True)


@pytest.mark.parametrize(("text", "isa", "bf16", "vnni"), [
    (SAPPHIRE, "amx", True, True), (ROME, "avx2", False, False), ("", "baseline", False, False)])
def test_paths_follow_the_flags(text: str, isa: str, bf16: bool, vnni: bool) -> None:
    info = hardware.parse_cpuinfo(text, cpus=1)
    assert (info.isa, info.bf16_native, info.int8_vnni) == (isa, bf16, vnni)
    assert info.to_dict()["isa"] == isa and isa in info.line()


def test_mask_emulates_an_avx2_only_cpu_and_says_so() -> None:
    info = hardware.parse_cpuinfo(SAPPHIRE, cpus=2, mask="avx2")
    assert info.flags == ("avx2", "fma") and not info.bf16_native and not info.int8_vnni
    assert "masked to avx2" in info.line()


def test_unknown_mask_is_named() -> None:
    with pytest.raises(ValueError, match="DISTILLERY_CPU_ISA='avx3'"):
        hardware.parse_cpuinfo(ROME, mask="avx3")


def test_this_machine_is_described() -> None:
    d = hardware.describe()
    assert d["model"] and d["cpus"] >= 1 and d["isa"] in ("amx", "avx512", "avx2", "baseline")
