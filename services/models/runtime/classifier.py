"""An encoder-classifier student: text -> (label, confidence), and a chat answer in the teacher's format."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import torch

from services.domain.labels import render_label
from services.models.runtime.causal_lm import best_device
from services.models.runtime.chat_format import last_user_text


class ClassifierRunner:
    """Load a saved sequence classifier (the customizer's `model/` directory) once; classify many."""

    def __init__(self, model_dir: str | Path, *, answer_template: str = "{label}", max_length: int = 256,
                 device: torch.device | None = None) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.device = device or best_device()
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).to(self.device).eval()
        config = self.model.config
        self.labels = [config.id2label[i] for i in range(config.num_labels)]
        self.answer_template, self.max_length = answer_template, max_length
        self._lock = threading.Lock()

    @torch.inference_mode()
    def probabilities(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                               max_length=self.max_length).to(self.device)
        with self._lock:
            logits = self.model(**batch).logits
        return torch.softmax(logits.float(), dim=-1).cpu()

    def classify(self, texts: list[str]) -> list[tuple[str, float]]:
        """(label, probability) per text."""
        probs = self.probabilities(texts)
        best = probs.argmax(dim=-1)
        return [(self.labels[int(i)], float(probs[row, i])) for row, i in enumerate(best)]

    def answer(self, requests: list[dict[str, Any]]) -> list[tuple[str, float]]:
        """Chat requests -> (assistant text in the teacher's label format, confidence)."""
        texts = [last_user_text(r["messages"]) for r in requests]
        return [(render_label(self.answer_template, label), p) for label, p in self.classify(texts)]
