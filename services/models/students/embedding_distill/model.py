"""The distillation student (encoder + pooling + projection into the teacher's space) and its vector losses.

Shared by the vector trainer (`trainer.py`) and ranking distillation (`listwise.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from services.domain.settings import DistillationSettings
from services.models.students.embedding_distill.runtime import Pooling, pool


class DistillStudent(torch.nn.Module):
    """Encoder + pooling, with an optional student_dim -> teacher_dim projection for MSE/cosine."""

    def __init__(self, encoder: torch.nn.Module, *, pooling: Pooling, student_dim: int, teacher_dim: int) -> None:
        super().__init__()
        self.encoder, self.pooling, self.student_dim = encoder, pooling, student_dim
        self.projection = torch.nn.Linear(student_dim, teacher_dim) if student_dim != teacher_dim else None

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return pool(hidden, attention_mask, self.pooling)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, dims: Sequence[int]
    ) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Per size d in `dims`: (student[:, :d], its projection into teacher space or None)."""
        pooled = self.embed(input_ids, attention_mask)
        levels: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        for d in dims:
            prefix = pooled[:, :d]
            projected: torch.Tensor | None
            if self.projection is not None:
                projected = F.linear(prefix, self.projection.weight[:, :d], self.projection.bias)
            else:
                projected = prefix if d == self.student_dim else None
            levels.append((prefix, projected))
        return levels


def distill_losses(
    levels: Sequence[tuple[torch.Tensor, torch.Tensor | None]],
    teacher: torch.Tensor,
    weights: DistillationSettings,
    *,
    pairs: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Each term averaged over the sizes, and their weighted sum as `loss` (teacher rows are unit vectors)."""
    teacher_sim = teacher @ teacher.T
    terms: dict[str, list[torch.Tensor]] = {"mse": [], "cosine": [], "similarity": [], "contrastive": []}
    for student, projected in levels:
        unit = F.normalize(student, dim=-1)
        terms["similarity"].append(F.mse_loss(unit @ unit.T, teacher_sim))
        if projected is not None:
            terms["mse"].append(F.mse_loss(projected, teacher))
            terms["cosine"].append(1 - F.cosine_similarity(projected, teacher, dim=-1).mean())
        if pairs is not None and pairs.shape[0] >= 2 and weights.contrastive_weight > 0:
            logits = unit[pairs[:, 0]] @ unit[pairs[:, 1]].T / weights.temperature
            target = torch.arange(pairs.shape[0], device=logits.device)
            terms["contrastive"].append((F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2)
    out = {name: torch.stack(values).mean() for name, values in terms.items() if values}
    weight = {"mse": weights.mse_weight, "cosine": weights.cosine_weight, "similarity": weights.similarity_weight,
              "contrastive": weights.contrastive_weight}
    out["loss"] = sum((weight[name] * value for name, value in out.items()), start=teacher.new_zeros(()))
    return out


def padded(token_ids: Sequence[Sequence[int]], rows: Sequence[int], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The token ids of `rows` as one right-padded batch, and its attention mask."""
    width = max(len(token_ids[i]) for i in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, index in enumerate(rows):
        tokens = token_ids[index]
        ids[row, :len(tokens)], mask[row, :len(tokens)] = torch.tensor(tokens), 1
    return ids, mask


@torch.no_grad()
def student_vectors(model: DistillStudent, token_ids: list[list[int]], rows: Sequence[int], *, pad_id: int,
                     batch_size: int) -> torch.Tensor:
    """The student's vectors of `rows`, without autograd (mining and the projection fit only read them)."""
    was_training = model.training
    model.eval()
    out = []
    device = next(model.parameters()).device
    for start in range(0, len(rows), batch_size):
        ids, mask = padded(token_ids, rows[start:start + batch_size], pad_id)
        out.append(model.embed(ids.to(device), mask.to(device)).float().cpu())
    model.train(was_training)
    return torch.cat(out)
