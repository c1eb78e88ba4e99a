"""The ``vllm:`` teacher backend: vLLM's offline engine in this process (GPU nodes with ``vllm`` installed).

``--teacher vllm:MODEL[,tokenizer=DIR][,tensor_parallel=N][,gpu_memory=F][,logprobs=K][,label_logprobs=K]``:
MODEL is a Hugging Face model directory (a saved teacher directory works: it is one). The same prompts,
settlement and label mapping as the ``openai:`` backend
(:class:`distillery.teacher.engine_teacher.EngineTeacher`); vLLM returns token ids and ``{token_id: Logprob}``
per generated token, so nothing is re-tokenised. Where vllm is not installed (this CPU machine) opening it
fails with one line saying so::

    distillery annotate --teacher vllm:/models/teacher,tensor_parallel=2 --data esci:… --out /tmp/ann
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from distillery.config import Config
from distillery.teacher.engine_labels import stop_ids, token_text
from distillery.teacher.engine_spec import parse_options
from distillery.teacher.engine_teacher import Completion, EngineTeacher

SPEC_FIELDS = {"label_logprobs": "endpoint_label_logprobs", "logprobs": "endpoint_logprobs"}
"""Spec keys → the ``teacher`` config field each overrides (checked by the config's validation)."""
OWN = {"tokenizer": "", "tensor_parallel": 1, "gpu_memory": 0.9}
"""The spec's own keys, with their defaults (``tokenizer`` defaults to MODEL)."""


@dataclass
class VllmSpec:
    model: str
    tokenizer: str
    tensor_parallel: int
    gpu_memory: float
    cfg: Config
    """The config with the spec's overrides applied to ``teacher.endpoint_*``."""


def parse_spec(rest: str, cfg: Config) -> VllmSpec:
    """``MODEL[,key=value…]`` → the engine settings and the config with the spec's overrides; a malformed spec
    fails in one line naming it and the key."""
    where = f"--teacher vllm:{rest}"
    model, *opts = rest.split(",")
    if not model:
        raise ValueError(f"{where}: no model (expected vllm:MODEL_DIR[,key=value…])")
    cfg, own = parse_options(where, opts, cfg, SPEC_FIELDS, OWN)
    spec = VllmSpec(model, own.get("tokenizer") or model, own.get("tensor_parallel", OWN["tensor_parallel"]),
                    own.get("gpu_memory", OWN["gpu_memory"]), cfg)
    if spec.tensor_parallel < 1:
        raise ValueError(f"{where}: tensor_parallel={spec.tensor_parallel}: must be at least 1")
    if not 0 < spec.gpu_memory <= 1:
        raise ValueError(f"{where}: gpu_memory={spec.gpu_memory}: must be in (0, 1] (a fraction of the GPU's memory)")
    return spec


class VllmTeacher(EngineTeacher):
    """A teacher answered by ``vllm.LLM.generate`` (greedy, top-K logprobs)."""

    def __init__(self, spec: VllmSpec, vllm: Any) -> None:
        t = spec.cfg.teacher
        super().__init__(spec.tokenizer, spec.cfg, t.endpoint_label_logprobs)
        self.vllm, self.model_name = vllm, spec.model
        self.llm = vllm.LLM(model=spec.model, tokenizer=spec.tokenizer, dtype="auto",
                            tensor_parallel_size=spec.tensor_parallel, gpu_memory_utilization=spec.gpu_memory,
                            max_logprobs=max(self.label_logprobs, t.endpoint_logprobs))
    def complete(self, prompts: list[list[int]], max_tokens: int, logprobs: int) -> list[Completion]:
        params = self.vllm.SamplingParams(temperature=0.0, max_tokens=max_tokens, logprobs=logprobs or None,
                                          skip_special_tokens=False)
        outs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        return [self._completion(o) for o in outs]

    def _completion(self, out: Any) -> Completion:
        gen = out.outputs[0]
        ids = list(gen.token_ids)
        stop = stop_ids(self.tok)
        stopped = gen.finish_reason == "stop"
        if ids and ids[-1] in stop:  # vLLM keeps the EOS id; the local decoder and the OpenAI servers do not
            ids = ids[:-1]
        top: list[dict[Hashable, float]] = [{int(k): float(v.logprob) for k, v in d.items()}
                                            for d in (gen.logprobs or [])[:len(ids) + 1]]
        texts = [token_text(self.tok, i) for i in ids]
        return Completion(ids, texts, top, stopped, len(out.prompt_token_ids), len(gen.token_ids))

    def identity(self) -> dict[str, Any]:
        return {"backend": "vllm", "model": self.model_name, "vllm": str(getattr(self.vllm, "__version__", "")),
                **self.settings()}


def open_vllm(rest: str, cfg: Config) -> VllmTeacher:
    """The ``vllm:`` backend (registered in :mod:`distillery.teacher.engines`)."""
    spec = parse_spec(rest, cfg)
    if importlib.util.find_spec("vllm") is None:
        raise ValueError(f"--teacher vllm:{rest}: the vllm package is not installed in this environment (install it "
                         "on a GPU node, or serve the model with vLLM and use --teacher openai:URL,model=NAME)")
    return VllmTeacher(spec, importlib.import_module("vllm"))
