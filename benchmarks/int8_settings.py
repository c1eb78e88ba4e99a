"""int8 quantiser settings side by side: label agreement with the PyTorch student and speed, on this CPU.

    .venv/bin/python benchmarks/serving_student.py \
        --data esci:../shared/data/esci-us/esci_us_dev.tsv.gz --out /tmp/esci-head
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/int8_settings.py --model /tmp/esci-head/model \
        --data esci:../shared/data/esci-us/esci_us_dev.tsv.gz --work /tmp/int8-settings

Settings: s8 weights at full range (what onnxruntime does by default; saturates without VNNI), s8 weights at
7-bit ``reduce_range`` (what ``distillery export --int8`` ships), and u8 weights (u8u8, exact everywhere but
slower), plus OpenVINO bf16 for reference.  Every figure is printed with the CPU it ran on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distillery import hardware
from distillery.config import load_config
from distillery.data.spec import load
from distillery.data.splits import split_pairs
from distillery.export.onnx_export import export_onnx, optimize_bert
from distillery.export.parity import compare, reference_and_onnx
from distillery.serving.runtime import OnnxStudent, OpenVinoStudent


def quantized(fused: Path, work: Path) -> dict[str, Path]:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    settings = {"s8 full range": {"weight_type": QuantType.QInt8, "reduce_range": False},
                "s8 reduce_range (shipped)": {"weight_type": QuantType.QInt8, "reduce_range": True},
                "u8u8": {"weight_type": QuantType.QUInt8, "reduce_range": False}}
    out = {}
    for name, kw in settings.items():
        path = work / f"{name.split(' (')[0].replace(' ', '_')}.onnx"
        quantize_dynamic(str(fused), str(path), per_channel=True, op_types_to_quantize=["MatMul", "Gemm"],
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT}, **kw)
        out[name] = path
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="saved student directory")
    ap.add_argument("--data", required=True, help="data spec; its held-out test split is the parity set")
    ap.add_argument("--work", default="/tmp/int8-settings")
    ap.add_argument("--seconds", type=float, default=3.0, help="timing window per graph")
    args = ap.parse_args()
    model, work = Path(args.model), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    test = split_pairs(load(args.data)[0], load_config("demo").data).test
    fields = json.loads((model / "distillery.json").read_text(encoding="utf-8"))["item_fields"]
    queries, items = [p.query for p in test], [p.item_text(fields) for p in test]
    plain = export_onnx(model, work / "student.onnx")
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    fused = optimize_bert(plain, work / "student.fused.onnx", config["num_attention_heads"], config["hidden_size"])
    graphs: dict[str, Path | OpenVinoStudent] = {"fused fp32": fused, **quantized(fused, work)}
    ov = OpenVinoStudent(plain, precision="bf16")
    graphs["openvino bf16"] = ov
    ref, outs = reference_and_onnx(model, graphs, queries, items)
    print(f"CPU: {hardware.cpu().line()}\n{len(queries)} held-out pairs of {args.data}; OpenVINO ran {ov.precision}\n")
    print("| graph | label agreement | max abs logit diff | pairs/s (batch 32, 1 thread) |\n|---|---:|---:|---:|")
    from transformers import AutoTokenizer

    from distillery.student.model import encode
    batch = {k: v.numpy() for k, v in encode(AutoTokenizer.from_pretrained(str(model)), queries[:32], items[:32],
                                             int(config.get("max_length", 128))).items()}
    for name, got in outs.items():
        r = compare(name, ref, got, None, None)
        speed = ""
        if name != "openvino bf16":
            student = OnnxStudent(graphs[name], threads=1)  # type: ignore[arg-type]
            student.run(batch)
            start, n = time.perf_counter(), 0
            while time.perf_counter() - start < args.seconds:
                student.run(batch)
                n += 1
            speed = f"{32 * n / (time.perf_counter() - start):.1f}"
        print(f"| {name} | {100 * r.agreement:.2f}% | {r.max_abs_diff:.2e} | {speed} |")


if __name__ == "__main__":
    main()
