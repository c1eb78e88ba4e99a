"""int8 dynamic quantisation of an exported student for CPU serving.

Weights of MatMul/Gemm become int8 (per output channel), activations are quantised per batch at run time (no calibration
set needed).  The parity gate holds the result to the ``export.int8_*`` bounds: a graph that misses them
is not served.

Settings (:data:`SETTINGS`, recorded in the version's ``runtime.json`` and the export report) are chosen to
be correct on every x86 CPU, not only the one that exports: onnxruntime multiplies uint8 activations by
int8 weights; with VNNI (``vpdpbusd``, AVX512-VNNI / AVX-VNNI / AMX) products accumulate in int32, but
without it (AVX2-only CPUs, e.g. AMD EPYC before Zen 4) MLAS uses ``vpmaddubsw``, which sums pairs of
products in *int16* and saturates: 2 × 255 × 127 = 64 770 > 32 767.  On such a CPU the tiny test student's
int8 copy answered [0.46, 0.07, 0.47] where fp32 gave [0.33, 0.33, 0.33].  ``reduce_range`` quantises
weights to 7 bits ([-64, 64]): 2 × 255 × 64 = 32 640 fits int16, so every ISA computes the same exact
integers and the agreement measured at export holds wherever the repository is served.  A per-ISA choice
(full range where VNNI exists) would be gated on the exporting CPU and could still saturate on the serving
one.  u8u8 (uint8 weights) is exact everywhere too, but gives up the VNNI u8×s8 kernels.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

SETTINGS: dict[str, Any] = {"method": "dynamic", "activations": "uint8", "weights": "int8", "per_channel": True,
                            "reduce_range": True, "op_types": ["MatMul", "Gemm"]}
"""How :func:`quantize_int8` quantises (recorded beside the graph it served)."""


def quantize_int8(onnx_in: str | Path, onnx_out: str | Path) -> Path:
    """Write a dynamically quantised (int8 weights, uint8 activations) copy of ``onnx_in``."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # onnxruntime's quantiser logs a warning per node it cannot handle; only the result matters here.
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))
    out = Path(onnx_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Per-channel weight scales and fp32 fused Attention: on the ESCI MiniLM student these kept 94.5% of
    # labels against 85% per-tensor with quantised Attention (docs/benchmarks.md).
    # reduce_range: 7-bit weights, so that CPUs without VNNI do not saturate (module docstring).
    quantize_dynamic(str(onnx_in), str(out), weight_type=QuantType.QInt8, per_channel=SETTINGS["per_channel"],
                     reduce_range=SETTINGS["reduce_range"], op_types_to_quantize=list(SETTINGS["op_types"]),
                     # Shape inference cannot type the outputs of fused contrib ops; they are all fp32.
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return out
