"""Batches of tokenized examples with little padding.

`length_grouped`: shuffle with the seed, cut into mega-batches of 50 batches, sort each by
length, cut into batches, shuffle the batch order. Each batch then holds examples of similar
length, so padding to the batch's longest wastes little; the order still changes every epoch.
`padded`: plain shuffled batches (the baseline the benchmark compares with).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

MEGA_BATCH = 50
IGNORE_INDEX = -100


@dataclass(frozen=True, slots=True)
class TokenizedExample:
    input_ids: list[int]
    labels: list[int] | None = None  # per-token targets (causal LM), IGNORE_INDEX where no loss
    target: int | None = None  # class index (classifier)

    def __len__(self) -> int:
        return len(self.input_ids)


def batch_order(lengths: Sequence[int], *, batch_size: int, seed: int, epoch: int, grouped: bool) -> list[list[int]]:
    """Indices of each batch for one epoch; a pure function of its arguments."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if grouped:
        mega = batch_size * MEGA_BATCH
        order = [i for start in range(0, len(order), mega)
                 for i in sorted(order[start:start + mega], key=lambda j: -lengths[j])]
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if grouped:
        rng.shuffle(batches)
    return batches


def collate(examples: Sequence[TokenizedExample], *, pad_id: int, left: bool = False) -> dict[str, torch.Tensor]:
    """Pad to the longest example of the batch (on the left with `left`, so answers end aligned)."""
    width = max(len(e) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example)
        span = slice(width - n, width) if left else slice(0, n)
        ids[row, span] = torch.tensor(example.input_ids)
        mask[row, span] = 1
        if example.labels is not None:
            labels[row, span] = torch.tensor(example.labels)
    batch = {"input_ids": ids, "attention_mask": mask}
    if examples[0].labels is not None:
        batch["labels"] = labels
    if examples[0].target is not None:
        batch["targets"] = torch.tensor([e.target for e in examples], dtype=torch.long)
    return batch


def padding_share(batches: Sequence[dict[str, torch.Tensor]]) -> float:
    """Share of token slots that are padding (what length grouping saves)."""
    total = sum(b["attention_mask"].numel() for b in batches)
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    return 1 - real / total if total else 0.0
