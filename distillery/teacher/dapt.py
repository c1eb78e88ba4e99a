"""Domain-adaptive pre-training: continued causal-LM training on the platform's own text.

Texts are the items' titles, brands, colours, attributes and descriptions and the query log, from the
training queries only (held-out queries' items stay unseen).  They are tokenised, joined with the end-of-text
token and packed into fixed blocks; a held-out share of blocks measures perplexity before and after.

CPU command (tiny profile, seconds)::

    distillery teacher dapt --data synthetic:300 --out /tmp/t/dapt --profile tiny
"""

from __future__ import annotations

import contextlib
import json
import math
import random
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase, get_linear_schedule_with_warmup

from distillery import hardware
from distillery.config import Config
from distillery.data.schema import Pair
from distillery.data.splits import Splits, split_pairs
from distillery.teacher import distributed
from distillery.teacher.model import add_lora, load_for_step, save_teacher, weights_info
from distillery.teacher.trainers import Timer, rebuilt, use_bf16


def platform_texts(pairs: list[Pair], max_texts: int = 0, seed: int = 0, desc_chars: int = 600) -> list[str]:
    """One text per distinct item (its fields) and per distinct query, in a seeded order."""
    items: dict[str, str] = {}
    for p in pairs:
        if p.item_id not in items:
            fields = [p.title, p.brand, p.color, p.attributes, p.bullet_points[:desc_chars], p.description[:desc_chars]]
            items[p.item_id] = ". ".join(" ".join(f.split()) for f in fields if f and f.strip())
    queries = sorted({" ".join(p.query.split()) for p in pairs})
    texts = [t for t in items.values() if t] + [f"search: {q}" for q in queries if q]
    random.Random(seed).shuffle(texts)
    return texts[:max_texts] if max_texts else texts


def pack(tok: PreTrainedTokenizerBase, texts: list[str], block: int) -> torch.Tensor:
    """Token blocks of length ``block`` from the texts joined by the end-of-text token (the tail is dropped)."""
    sep = tok.eos_token_id if tok.eos_token_id is not None else 0
    flat: list[int] = []
    for ids in tok(texts, add_special_tokens=False)["input_ids"]:
        flat.extend([*ids, sep])
    n = len(flat) // block
    if n < 2:
        raise ValueError(f"only {len(flat)} tokens of platform text: too few for two blocks of {block}")
    return torch.tensor(flat[: n * block]).view(n, block)


@torch.no_grad()
def perplexity(model: Any, blocks: torch.Tensor, batch_size: int, device: torch.device) -> float:
    """exp(mean next-token loss) over the blocks (every process computes it on all of them: FSDP needs all)."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(blocks), batch_size):
        x = blocks[i:i + batch_size].to(device)
        loss = model(input_ids=x, labels=x).loss
        total += float(loss) * x.numel()
        count += x.numel()
    return math.exp(total / count)


def global_batches(n: int, cfg: Config) -> tuple[int, int]:
    """(batches per epoch, optimiser steps) of DAPT over ``n`` blocks.  Several processes drop a partial last
    batch (as ``DistributedSampler(drop_last=True)``), which could not be split evenly between them."""
    step = cfg.teacher.dapt
    if distributed.world_size() == 1:
        per_epoch = math.ceil(n / step.batch_size)
    elif n < step.batch_size:
        raise ValueError(f"teacher.dapt.batch_size={step.batch_size}: larger than the {n} DAPT training blocks, "
                         "which several processes cannot share")
    else:
        per_epoch = n // step.batch_size
    return per_epoch, step.max_steps or max(1, round(per_epoch * step.epochs))


def train_lm(model: Any, blocks: torch.Tensor, cfg: Config) -> list[float]:
    """Causal-LM training of the trainable parameters on packed blocks; returns the loss per step.

    ``model`` may be wrapped for several processes (:func:`distributed.wrap`): each takes its own slice of every
    global batch, drawn in the same seeded order everywhere, so the loss of a step (averaged over processes) is
    the one a single process would compute on the whole batch."""
    step = cfg.teacher.dapt
    me, dev = distributed.rank(), distributed.device()
    per, accum = distributed.batch_plan("dapt", step.batch_size, distributed.world_size(), cfg.teacher.micro_batch_size)
    g = torch.Generator().manual_seed(cfg.teacher.seed)
    per_epoch, total = global_batches(len(blocks), cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=step.lr, weight_decay=0.0)
    sched = get_linear_schedule_with_warmup(opt, max(1, total // 10), total)
    curve: list[float] = []
    model.train()
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16(cfg.teacher))
    order = torch.randperm(len(blocks), generator=g)
    for s in tqdm(range(total), desc="dapt", unit="step", disable=not distributed.is_main()):
        k = (s % per_epoch) * step.batch_size
        if k == 0 and s:
            order = torch.randperm(len(blocks), generator=g)
        mine = order[k:k + step.batch_size][me * per * accum:(me + 1) * per * accum]
        loss_sum = 0.0
        for j, rows in enumerate(mine.split(per)):
            # DDP averages gradients at the last micro-batch only; the others accumulate locally
            last = j == math.ceil(len(mine) / per) - 1
            sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
            x = blocks[rows].to(dev)
            with sync:
                with autocast:
                    loss = model(input_ids=x, labels=x).loss * (len(rows) / len(mine))
                loss.backward()
            loss_sum += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        curve.append(distributed.mean_over_ranks(loss_sum))
    model.eval()
    return curve


def run_dapt(pairs: list[Pair] | Splits, cfg: Config, out: str | Path, base: str | None = None) -> dict[str, Any]:
    """Continue pre-training ``base`` on the platform text of ``pairs``' training queries (split by query unless
    already a split); save to ``out``.  Under torchrun, data-parallel (DDP or FSDP: ``teacher.launch.strategy``);
    rank 0 saves."""
    out = Path(out)
    tok, model, meta = load_for_step(base, cfg)
    t = cfg.teacher
    train_pairs = (pairs if isinstance(pairs, Splits) else split_pairs(pairs, cfg.data)).train
    blocks = pack(tok, platform_texts(train_pairs, t.dapt_max_texts, t.seed), t.dapt_block_size)
    n_eval = max(1, round(len(blocks) * t.dapt_eval_fraction))
    held, train = blocks[:n_eval], blocks[n_eval:]
    dev = distributed.device()
    if t.quantize == "none":  # 4-bit weights were loaded onto their GPU already
        model.to(dev)  # type: ignore[arg-type]
    info = weights_info(model)
    torch.manual_seed(t.seed)  # the same LoRA initialisation in every process
    model = distributed.wrap(add_lora(model, t), t.launch.strategy)
    ppl_before = perplexity(model, held, t.dapt.batch_size, dev)
    with Timer() as timer:
        curve = train_lm(model, train, cfg)
    ppl_after = perplexity(model, held, t.dapt.batch_size, dev)
    summary = {"step": "dapt", "train_blocks": len(train), "heldout_blocks": n_eval, "block_size": t.dapt_block_size,
               "perplexity_before": round(ppl_before, 3), "perplexity_after": round(ppl_after, 3),
               "seconds": round(timer.seconds, 1), "loss_first": curve[0], "loss_last": curve[-1],
               "base": base or t.model, "bf16_autocast": use_bf16(t), **info,
               "processes": distributed.world_size(), "strategy": t.launch.strategy if distributed.world_size() > 1
               else "single", "hardware": hardware.cpu().line()}
    final = _final(model, base, cfg)
    if final is not None:
        meta.steps.append(dict(summary))
        save_teacher(final, tok, meta, out)
        (out / "dapt_summary.json").write_text(json.dumps({**summary, "losses": curve}, indent=2), encoding="utf-8")
    return summary


def _final(model: Any, base: str | None, cfg: Config) -> Any | None:
    """The model rank 0 saves (``None`` elsewhere); FSDP's shards are gathered first, by every process."""
    if distributed.world_size() > 1 and cfg.teacher.launch.strategy == "fsdp":
        state = distributed.full_state_dict(model)
        return rebuilt(state, base, cfg) if distributed.is_main() else None
    return distributed.unwrap(model) if distributed.is_main() else None
