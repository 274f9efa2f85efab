"""Encoder-classifier students: mean-pooled encoder + linear head; text -> (label, confidence).

Mean pooling, not the [CLS]/pooler output: sentence encoders such as all-MiniLM-L6-v2 were
trained to put the meaning of a text in the mean of its token vectors; their [CLS] token was not
(a pooler-based head on MiniLM stayed near chance in our runs). Layout of a saved student:
`<dir>/` holds the encoder (a Hugging Face model + tokenizer) and `classifier_head.safetensors`
+ `classifier.json` (labels, answer template, max length).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from services.domain.labels import render_label
from services.models.locks import MODEL_LOAD_LOCK
from services.models.runtime.chat_format import last_user_text
from services.models.students.causal_lm_lora.runtime import best_device
from services.models.students.encoder_classifier.lexical import LexicalHead

HEAD_FILE = "classifier_head.safetensors"
CALIBRATION_FILE = "calibration.json"  # in the artifact root: out-of-fold (confidence, correct) of training records
META_FILE = "classifier.json"
# What a new student's confidence is (`confidence` in classifier.json); a student saved without the key used
# "probability". The margin ranks answers the teacher agrees with better (bench/selective, docs/selective.md).
CONFIDENCE = "margin"


def confidence_of(probs: np.ndarray, kind: str = CONFIDENCE) -> np.ndarray:
    """Per row of class probabilities, the number a selective threshold is set on: the top probability
    ("probability"), or its lead over the runner-up ("margin", in [0, 1]; 1 for a single class)."""
    if kind == "probability" or probs.shape[1] < 2:
        return np.asarray(probs.max(axis=1))
    if kind != "margin":
        raise ValueError(f"unknown confidence {kind!r}: 'margin' or 'probability'")
    top_two = np.partition(probs, probs.shape[1] - 2, axis=1)[:, -2:]
    return np.asarray(top_two[:, 1] - top_two[:, 0])


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


class MeanPoolClassifier(torch.nn.Module):
    """encoder -> mean of token vectors -> dropout -> linear layer over the labels."""

    def __init__(self, encoder: torch.nn.Module, num_labels: int, *, dropout: float = 0.1,
                 normalize: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(int(encoder.config.hidden_size), num_labels)  # type: ignore[union-attr, arg-type]  # a Module attribute, typed loosely by torch
        self.normalize = normalize  # unit-length pooled vectors (heads fitted on a frozen sentence encoder)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = mean_pool(hidden, attention_mask)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        logits: torch.Tensor = self.head(self.dropout(pooled))
        return logits

    def save(self, directory: Path, tokenizer: Any, meta: dict[str, Any]) -> None:
        from safetensors.torch import save_file

        directory.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(str(directory))  # type: ignore[operator]  # a transformers model held as a Module
        tokenizer.save_pretrained(str(directory))
        save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()},
                  str(directory / HEAD_FILE))
        (directory / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> tuple[MeanPoolClassifier, dict[str, Any]]:
        from safetensors.torch import load_file
        from transformers import AutoModel

        meta = json.loads((directory / META_FILE).read_text("utf-8"))
        with MODEL_LOAD_LOCK:
            try:  # saved without a pooler (mean pooling needs none): do not build a random one
                encoder = AutoModel.from_pretrained(str(directory), add_pooling_layer=False)
            except TypeError:  # architectures without a pooler
                encoder = AutoModel.from_pretrained(str(directory))
            model = cls(encoder, len(meta["labels"]), normalize=bool(meta.get("normalize", False)))
        model.head.load_state_dict(load_file(str(directory / HEAD_FILE)))
        return model, meta


class ClassifierRunner:
    """Load a saved student (the customizer's `model/` directory) once; classify many. Thread-safe."""

    def __init__(self, model_dir: str | Path, *, device: torch.device | None = None) -> None:
        from transformers import AutoTokenizer

        self.device = device or best_device()
        model, meta = MeanPoolClassifier.load(Path(model_dir))
        self.model = model.to(self.device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.labels: list[str] = list(meta["labels"])
        self.answer_template: str = meta.get("answer_template") or "{label}"
        self.max_length: int = int(meta.get("max_length", 256))
        self.lexical = LexicalHead.load(Path(model_dir))  # an ensemble student's TF-IDF half, if it has one
        self.confidence: str = meta.get("confidence", "probability")
        self._lock = threading.Lock()

    @torch.inference_mode()
    def probabilities(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                               max_length=self.max_length).to(self.device)
        with self._lock:
            logits = self.model(batch["input_ids"], batch["attention_mask"])
        probs = torch.softmax(logits.float(), dim=-1).cpu()
        if self.lexical is not None:
            mix = self.lexical.mix
            probs = (1 - mix) * probs + mix * torch.from_numpy(self.lexical.probabilities(texts)).float()
        return probs

    def classify(self, texts: list[str]) -> list[tuple[str, float]]:
        """(label, confidence) per text: the most probable label, and `confidence_of` its probabilities."""
        probs = self.probabilities(texts).numpy()
        scores = confidence_of(probs, self.confidence)
        return [(self.labels[int(i)], float(scores[row])) for row, i in enumerate(probs.argmax(axis=1))]

    def answer(self, requests: list[dict[str, Any]]) -> list[tuple[str, float]]:
        """Chat requests -> (assistant text in the teacher's label format, confidence)."""
        texts = [last_user_text(r["messages"]) for r in requests]
        return [(render_label(self.answer_template, label), p) for label, p in self.classify(texts)]


def save_calibration(artifact_dir: Path, calibration: dict[str, Any]) -> None:
    """Out-of-fold {"confidence": [...], "correct": [...]} of the records the student was fitted on."""
    (artifact_dir / CALIBRATION_FILE).write_text(json.dumps(calibration), encoding="utf-8")


def load_calibration(artifact_dir: Path) -> tuple[list[float], list[bool], str] | None:
    """(confidence, agreed-with-teacher, where they come from) on records the student was not fitted on
    (out-of-fold training predictions, or the val split), when the student has them."""
    path = artifact_dir / CALIBRATION_FILE
    if not path.exists():
        return None
    body = json.loads(path.read_text("utf-8"))
    return list(body["confidence"]), [bool(x) for x in body["correct"]], str(body.get("source", "calibration"))
