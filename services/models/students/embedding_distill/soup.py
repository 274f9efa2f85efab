"""Model soup: the uniform average of the weights of students fine-tuned from the same base.

Two distillation recipes started from the same weights (the vector losses, and the listwise ranking
loss with mined negatives) end in different places; their average retrieves better on unseen
companies than either (docs/benchmarks.md, issue 20), as in "Model soups" (Wortsman et al., 2022):
averaging fine-tunes of one start keeps what they share and cancels what each over-fitted. It costs
nothing at serving time: the soup is one model of the same size.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch


def average_state_dicts(states: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of state dicts with the same keys and shapes (integer tensors: the first's)."""
    if not states:
        raise ValueError("a soup needs at least one state dict")
    keys = set(states[0])
    for other in states[1:]:
        if set(other) != keys:
            raise ValueError(f"the state dicts differ in keys: {sorted(keys ^ set(other))[:5]}")
    out: dict[str, torch.Tensor] = {}
    for key, first in states[0].items():
        if any(s[key].shape != first.shape for s in states[1:]):
            raise ValueError(f"{key}: shapes differ ({[tuple(s[key].shape) for s in states]})")
        if not first.is_floating_point():
            out[key] = first.clone()  # e.g. position ids: the same in every ingredient
            continue
        total = torch.zeros_like(first, dtype=torch.float32)
        for state in states:
            total += state[key].float()
        out[key] = (total / len(states)).to(first.dtype)
    return out


def state_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the model's weights (an ingredient, kept while the model trains on)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def average_students(students: Sequence[Path], out: Path) -> Path:
    """Write the soup of sentence-transformers student directories to `out`: the first's files, with the
    encoder weights averaged and the projection too (`projection/`, where every student has one), as the
    trainer's soup averages both."""
    from safetensors.torch import load_file, save_file

    if not students:
        raise ValueError("a soup needs at least one student")
    weights = "model.safetensors"
    missing = [str(p) for p in students if not (p / weights).exists()]
    if missing:
        raise FileNotFoundError(f"no {weights} in {missing}")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(students[0], out)
    for name in (weights, f"projection/{weights}"):
        if all((p / name).exists() for p in students):
            soup = average_state_dicts([load_file(str(p / name)) for p in students])
            save_file(soup, str(out / name), metadata={"format": "pt"})
    return out
