"""Sentence embeddings from a sentence-transformers-style directory, with Matryoshka truncation.

Reads the directory's own `modules.json` (transformer path, pooling module, whether a Normalize
module follows), `<pooling>/config.json` and `sentence_bert_config.json` (max_seq_length,
do_lower_case), and runs the transformer with plain `transformers`: no sentence-transformers import
(slow), no progress bars, so it is cheap to time. Loads the registry's cached encoders and the
directories the embedding-distillation trainer writes. The evaluator and the gateway's
`/v1/embeddings` (with `dimensions`) call `encode`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from services.domain.errors import ModelUnavailable
from services.models.locks import MODEL_LOAD_LOCK

Pooling = Literal["mean", "cls", "max", "mean_sqrt_len"]
_POOLING_FLAGS: dict[str, Pooling] = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
}


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: Pooling) -> torch.Tensor:
    """One vector per row of token states (batch x tokens x dim), padding excluded."""
    if mode == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    summed = (hidden * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1e-9)
    return summed / (counts.sqrt() if mode == "mean_sqrt_len" else counts)


def truncate(vectors: np.ndarray, dimensions: int | None, *, normalize: bool = True) -> np.ndarray:
    """Matryoshka truncation: keep the first `dimensions` values, then re-normalise rows (if asked)."""
    if dimensions is not None:
        if not 1 <= dimensions <= vectors.shape[-1]:
            raise ValueError(f"dimensions must be between 1 and {vectors.shape[-1]}, got {dimensions}")
        vectors = vectors[..., :dimensions]
    if normalize:
        norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
        vectors = vectors / np.where(norms > 0, norms, 1.0)
    return np.ascontiguousarray(vectors, dtype=np.float32)


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """No "Loading weights" progress bar from transformers while loading (restored afterwards)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


class SentenceTransformerLayout:
    """What a sentence-transformers directory says about how to embed (read from its JSON files)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        modules = json.loads((path / "modules.json").read_text("utf-8")) if (path / "modules.json").exists() else []
        kinds = {m["type"].rsplit(".", 1)[-1]: m.get("path", "") for m in modules}
        self.transformer_path = path / kinds.get("Transformer", "")
        pooling_config = path / kinds.get("Pooling", "1_Pooling") / "config.json"
        self.pooling: Pooling = "mean"
        self.pooling_config: dict[str, object] = {}
        if pooling_config.exists():
            self.pooling_config = json.loads(pooling_config.read_text("utf-8"))
            enabled = [mode for flag, mode in _POOLING_FLAGS.items() if self.pooling_config.get(flag)]
            if len(enabled) != 1:
                raise ModelUnavailable(f"{pooling_config}: need exactly one supported pooling mode, got {enabled}")
            self.pooling = enabled[0]
        # Without modules.json (a bare transformers directory) mean pooling + normalisation is the
        # sentence-transformers default for encoders.
        self.normalize = "Normalize" in kinds or not modules
        st_config = path / "sentence_bert_config.json"
        raw = json.loads(st_config.read_text("utf-8")) if st_config.exists() else {}
        self.max_seq_length: int | None = raw.get("max_seq_length")
        self.do_lower_case: bool = bool(raw.get("do_lower_case", False))


class Embedder:
    """Encode texts to unit vectors on CPU or GPU; `dimensions` truncates (Matryoshka) and re-normalises."""

    def __init__(self, path: Path | str, *, device: str | None = None, max_seq_length: int | None = None) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.path = Path(path)
        if not (self.path / "config.json").exists() and not (self.path / "modules.json").exists():
            raise ModelUnavailable(f"{self.path} is not a model directory (no config.json or modules.json)")
        self.layout = SentenceTransformerLayout(self.path)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        with quiet_loading(), MODEL_LOAD_LOCK:
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.layout.transformer_path))
            self.model = AutoModel.from_pretrained(str(self.layout.transformer_path)).to(self.device).eval()
        limit: int = self.layout.max_seq_length or int(getattr(self.model.config, "max_position_embeddings", 512))
        self.max_seq_length = min(max_seq_length or limit, limit)
        self.dim = int(self.model.config.hidden_size)

    @property
    def pooling(self) -> Pooling:
        return self.layout.pooling

    def encode(
        self, texts: Sequence[str], *, dimensions: int | None = None, batch_size: int = 64, normalize: bool = True
    ) -> np.ndarray:
        """(len(texts), dimensions or dim) float32 vectors, rows in input order."""
        if dimensions is not None and not 1 <= dimensions <= self.dim:
            raise ValueError(f"dimensions must be between 1 and {self.dim}, got {dimensions}")
        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of texts, not one string")
        out = np.zeros((len(texts), dimensions or self.dim), dtype=np.float32)
        if not texts:
            return out
        prepared = [t.lower() for t in texts] if self.layout.do_lower_case else list(texts)
        # Longest first, in batches of similar length: little padding, and an early OOM if any.
        order = sorted(range(len(prepared)), key=lambda i: -len(prepared[i]))
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                pooled = self.embed_batch([prepared[i] for i in rows])
                out[rows] = truncate(pooled.float().cpu().numpy(), dimensions, normalize=normalize)
        return out

    def embed_batch(self, texts: Sequence[str]) -> torch.Tensor:
        """Pooled, un-normalised vectors of one batch (on the model's device)."""
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_seq_length,
                               return_tensors="pt").to(self.device)
        hidden = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        return pool(hidden, batch["attention_mask"], self.pooling)
