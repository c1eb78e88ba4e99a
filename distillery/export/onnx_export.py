"""ONNX export of a saved student: dynamic batch and sequence axes, logits and probabilities out.

    from distillery.export.onnx_export import export_onnx
    export_onnx("runs/ft/model", "/tmp/student.onnx")

The graph takes int64 ``input_ids``, ``attention_mask``, ``token_type_ids`` of shape (batch, seq) and
returns ``logits`` and ``probs`` (softmax) of shape (batch, classes), so the Triton ensemble can return
label probabilities without a post-processing model.

This **plain** graph holds standard ``ai.onnx`` operators only (:func:`check_standard` proves it); it is what
TensorRT's ONNX parser and OpenVINO read.  :func:`optimize_bert` derives the **fused** graph from it
(onnxruntime's ``com.microsoft`` contrib operators, which only onnxruntime runs)::

    from distillery.export.onnx_export import check_standard
    check_standard("/tmp/student.onnx")     # {"Add", "Erf", "Gather", "LayerNormalization", "MatMul", ...}
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from distillery.serving.preprocess import INPUT_NAMES

OUTPUT_NAMES = ("logits", "probs")
DEFAULT_OPSET = 17
"""Opset 17 is the first with ``LayerNormalization`` as a standard operator: the exporter writes one node per
LayerNorm instead of ReduceMean/Sub/Pow/Sqrt/Div, which TensorRT (≥ 8.6) imports as its normalization layer
and keeps accurate in an fp16 engine (the decomposed pattern overflows in fp16, and TensorRT warns about it).
TensorRT 10's parser, onnxruntime and OpenVINO all read opset 17, and it is within what the TorchScript
exporter writes."""
STANDARD_DOMAINS = ("", "ai.onnx")
"""The default ONNX operator domain (empty or ``ai.onnx``): the only one TensorRT's parser reads without plugins."""


class NonStandardGraph(ValueError):
    """An ONNX graph holds operators outside the standard domain (e.g. onnxruntime's ``com.microsoft`` fusions)."""


class _WithProbs(torch.nn.Module):
    """The classifier plus a softmax head; the three inputs are positional, as ONNX wants them."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask,
                            token_type_ids=token_type_ids).logits
        return logits, torch.softmax(logits, dim=-1)


def load_for_export(model_dir: str | Path, attn: str = "eager") -> torch.nn.Module:
    """The saved classifier in eval mode with an explicit attention implementation.

    ``eager`` attention exports as plain MatMul/Softmax that onnxruntime's BERT fusions recognise; the
    SDPA path exports as a larger subgraph that barely fuses (measured in docs/benchmarks.md).
    """
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), attn_implementation=attn)
    model.eval()
    return model


def export_onnx(model_dir: str | Path, out_path: str | Path, opset: int = DEFAULT_OPSET, attn: str = "eager"
                ) -> Path:
    """Write ``out_path`` (one self-contained .onnx file) from a saved student directory."""
    model = _WithProbs(load_for_export(model_dir, attn))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    dummy = tuple(torch.ones((2, 8), dtype=torch.long) for _ in INPUT_NAMES)
    axes = {n: {0: "batch", 1: "seq"} for n in INPUT_NAMES}
    axes.update({n: {0: "batch"} for n in OUTPUT_NAMES})
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
        # The TorchScript exporter (dynamo=False): the dynamo one needs onnxscript, which we do not ship.
        torch.onnx.export(model, dummy, str(out), input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                          dynamic_axes=axes, opset_version=opset, dynamo=False, do_constant_folding=True)
    return out


def optimize_bert(onnx_in: str | Path, onnx_out: str | Path, num_heads: int, hidden: int) -> Path:
    """Fuse attention, LayerNorm, GELU and bias adds with onnxruntime's offline BERT optimizer.

    This is the "better-fused export": the fused ``Attention``/``SkipLayerNormalization`` kernels do
    the same arithmetic in fewer passes over memory.  The result is still checked by the parity gate.
    """
    from onnxruntime.transformers.optimizer import optimize_model

    opt = optimize_model(str(onnx_in), model_type="bert", num_heads=num_heads, hidden_size=hidden,
                         opt_level=1, use_gpu=False)
    opt.save_model_to_file(str(onnx_out))
    return Path(onnx_out)


def graph_ops(onnx_path: str | Path) -> set[tuple[str, str]]:
    """Every ``(domain, op_type)`` in the graph, subgraphs included (``""`` is the standard domain)."""
    import onnx

    found: set[tuple[str, str]] = set()

    def walk(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            found.add((node.domain, node.op_type))
            for attr in node.attribute:
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    walk(sub)

    walk(onnx.load(str(onnx_path), load_external_data=False).graph)
    return found


def check_standard(onnx_path: str | Path) -> set[str]:
    """Run ``onnx.checker`` (full check: types and shapes inferred) and require standard ``ai.onnx`` ops only.

    Returns the op types found; raises :class:`NonStandardGraph` naming the file and the foreign operators
    (``onnx.checker`` accepts contrib operators of unregistered domains, so it cannot prove this alone).
    """
    import onnx

    onnx.checker.check_model(str(onnx_path), full_check=True)
    ops = graph_ops(onnx_path)
    foreign = sorted(f"{d}::{op}" for d, op in ops if d not in STANDARD_DOMAINS)
    if foreign:
        raise NonStandardGraph(f"{onnx_path}: operators outside the standard ONNX domain: {', '.join(foreign)} "
                               "(TensorRT reads ai.onnx operators only: give it the plain, unfused graph)")
    return {op for _, op in ops}
