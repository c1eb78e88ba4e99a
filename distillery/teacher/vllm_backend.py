"""The ``vllm:`` teacher backend: vLLM's offline engine in this process (GPU nodes with ``vllm`` installed).

``--teacher vllm:MODEL[,tokenizer=DIR][,tensor_parallel=N][,gpu_memory=F][,label_logprobs=K]``: MODEL is a Hugging
Face model directory (a saved teacher directory works: it is one).  The same prompts, settlement and label
mapping as the ``openai:`` backend (:class:`distillery.teacher.engine_teacher.EngineTeacher`); vLLM returns
token ids and ``{token_id: Logprob}`` per generated token, so nothing is re-tokenised.  Where vllm is not
installed (this CPU machine) opening it fails with one line saying so::

    distillery annotate --teacher vllm:/models/teacher,tensor_parallel=2 --data esci:… --out /tmp/ann
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Hashable
from dataclasses import replace
from typing import Any

from distillery.config import Config
from distillery.teacher.engine_labels import stop_ids, token_text
from distillery.teacher.engine_teacher import Completion, EngineTeacher

KEYS = ("tokenizer", "tensor_parallel", "gpu_memory", "label_logprobs", "logprobs")


def parse_spec(rest: str) -> tuple[str, dict[str, str]]:
    """``MODEL[,key=value…]`` → (model, options); a malformed spec fails naming it."""
    model, *opts = rest.split(",")
    if not model:
        raise ValueError(f"--teacher vllm:{rest}: no model (expected vllm:MODEL_DIR[,key=value…])")
    out: dict[str, str] = {}
    for opt in opts:
        key, sep, value = opt.partition("=")
        if not sep or not value or key not in KEYS:
            raise ValueError(f"--teacher vllm:{rest}: {opt!r} is not one of {', '.join(k + '=…' for k in KEYS)}")
        out[key] = value
    return model, out


class VllmTeacher(EngineTeacher):
    """A teacher answered by ``vllm.LLM.generate`` (greedy, top-K logprobs)."""

    def __init__(self, model: str, opts: dict[str, str], cfg: Config, vllm: Any) -> None:
        super().__init__(opts.get("tokenizer", model), cfg, int(opts.get("label_logprobs",
                                                                          cfg.teacher.endpoint_label_logprobs)))
        self.vllm, self.model_name = vllm, model
        self.llm = vllm.LLM(model=model, tokenizer=opts.get("tokenizer", model), dtype="auto",
                            tensor_parallel_size=int(opts.get("tensor_parallel", 1)),
                            gpu_memory_utilization=float(opts.get("gpu_memory", 0.9)),
                            max_logprobs=max(self.label_logprobs, cfg.teacher.endpoint_logprobs))

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
    model, opts = parse_spec(rest)
    if importlib.util.find_spec("vllm") is None:
        raise ValueError(f"--teacher vllm:{rest}: the vllm package is not installed in this environment (install it "
                         "on a GPU node, or serve the model with vLLM and use --teacher openai:URL,model=NAME)")
    if "logprobs" in opts:
        cfg = replace(cfg, teacher=replace(cfg.teacher, endpoint_logprobs=int(opts["logprobs"])))
    return VllmTeacher(model, opts, cfg, importlib.import_module("vllm"))
