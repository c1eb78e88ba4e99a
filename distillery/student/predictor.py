"""Load any saved classifier (BERT student or lexical model) behind one ``predict_proba``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distillery.data.schema import Pair
from distillery.student.lexical import LEXICAL_FILE, LexicalModel
from distillery.student.model import StudentMeta, predict_logits, softmax


class Classifier:
    """A saved model directory, loaded once; ``predict_proba`` returns (n, classes) in input order."""

    def __init__(self, model_dir: str | Path, batch_size: int = 64) -> None:
        self.dir = Path(model_dir)
        if not self.dir.is_dir():
            raise FileNotFoundError(f"--model {model_dir}: no such directory")
        self.meta = StudentMeta.load(self.dir)
        self.batch_size = batch_size
        self._lexical: LexicalModel | None = None
        if (self.dir / LEXICAL_FILE).exists():
            self._lexical = LexicalModel.load(self.dir)
        else:
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(self.dir)
            self.model = AutoModelForSequenceClassification.from_pretrained(self.dir)
            self.model.eval()

    @property
    def classes(self) -> list[str]:
        return self.meta.classes

    def logits(self, pairs: list[Pair], progress: bool = False) -> np.ndarray:
        if self._lexical is not None:
            return np.log(np.clip(self._lexical.predict_proba(pairs), 1e-12, 1.0))
        return predict_logits(self.model, self.tokenizer, pairs, self.meta.item_fields, self.meta.max_length,
                              self.batch_size, progress=progress)

    def predict_proba(self, pairs: list[Pair], progress: bool = False) -> np.ndarray:
        return softmax(self.logits(pairs, progress=progress))
