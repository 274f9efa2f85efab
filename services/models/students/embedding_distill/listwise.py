"""Ranking distillation: the student learns the teacher's ranking of passages for each logged query.

Queries and passages come from the logs (`data.py` tells them apart by `input_type`, or by its rule).
Each round, every train query gets a candidate list from the logged passages: the teacher's top
(`listwise_candidates - hard_negatives`) and the `hard_negatives` passages the *current student* ranks
highest among those the teacher left out (the paper's iterative hard-negative mining: the student's
own mistakes, re-mined each round with the weights it has then). A batch holds `batch_size` queries
and the union of their candidates; each query is scored against every passage of the batch (its
candidates plus the others', as in-batch negatives). The listwise term is KL(teacher || student)
between the softmaxes of the cosine similarities at `listwise_temperature`, averaged over the full
size and every Matryoshka size; the vector losses (`distill_losses`) apply to every row beside it.
With a relevance judge (`relevance.py`), each round's lists are graded too and a second term pulls the
student's softmax toward the judged grades (`judge_weight`).

Rounds run the training loop one after another (steps split evenly, a fresh schedule each); a
finished round leaves its weights and candidates in `<work_dir>/round-<r>/`, so a resumed run skips
finished rounds and re-uses the mined lists of the one in progress.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from services.domain.settings import DistillationSettings, TrainingSettings
from services.models.students.embedding_distill.model import DistillStudent, distill_losses, padded, student_vectors
from services.models.students.embedding_distill.relevance import RelevanceJudge
from services.models.training.base import TrainControl
from services.models.training.loop import LoopResult, run_training

log = logging.getLogger(__name__)
_DONE = "weights.pt"
_LISTS = "candidates.json"
_RESULT = "result.json"


def listwise_kl(student_q: torch.Tensor, student_p: torch.Tensor, teacher_q: torch.Tensor, teacher_p: torch.Tensor,
                *, temperature: float) -> torch.Tensor:
    """Mean over queries of KL(softmax(teacher sims / T) || softmax(student sims / T)) over the passages."""
    student = F.normalize(student_q, dim=-1) @ F.normalize(student_p, dim=-1).T / temperature
    teacher = teacher_q @ teacher_p.T / temperature
    return F.kl_div(F.log_softmax(student, dim=-1), F.log_softmax(teacher, dim=-1), log_target=True,
                    reduction="batchmean")


def judged_listwise(student_q: torch.Tensor, student_p: torch.Tensor, targets: torch.Tensor, *,
                    temperature: float) -> torch.Tensor:
    """Cross-entropy from the judged grades to the student's softmax over the batch's passages.

    `targets[i, j]` is query i's grade of passage j (0 where ungraded or unrelated); each query's target
    distribution is its grades normalised to sum 1. Queries with no passage graded above 0 are left out;
    with none left the term is 0.
    """
    mass = targets.sum(dim=-1)
    rows = mass > 0
    if not bool(rows.any()):
        return student_q.new_zeros(())
    logits = F.normalize(student_q[rows], dim=-1) @ F.normalize(student_p, dim=-1).T / temperature
    target = targets[rows] / mass[rows, None]
    return -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


@torch.no_grad()
def mine_candidates(teacher_q: torch.Tensor, teacher_p: torch.Tensor, student_q: torch.Tensor,
                    student_p: torch.Tensor, *, candidates: int, hard_negatives: int) -> list[list[int]]:
    """Per query: the teacher's top passages, then the student's highest-ranked ones the teacher left out."""
    keep = min(candidates - hard_negatives, teacher_p.shape[0])
    teacher_top = (teacher_q @ teacher_p.T).topk(keep, dim=-1).indices.tolist()
    student_order = (F.normalize(student_q, dim=-1) @ F.normalize(student_p, dim=-1).T).argsort(
        dim=-1, descending=True)[:, :candidates].tolist()
    lists = []
    for top, ranked in zip(teacher_top, student_order, strict=True):
        taken = set(top)
        lists.append(top + [p for p in ranked if p not in taken][:hard_negatives])
    return lists


class ListwiseDistillTask:
    """The loop's view of one round: batches of queries with the union of their candidate passages."""

    def __init__(self, model: DistillStudent, token_ids: list[list[int]], teacher: torch.Tensor, *,
                 lists: dict[int, list[int]], val_lists: dict[int, list[int]], weights: DistillationSettings,
                 dims: Sequence[int], batch_size: int, seed: int, pad_id: int,
                 grades: dict[int, dict[int, int]] | None = None) -> None:
        self.model, self.token_ids, self.teacher, self.lists = model, token_ids, teacher, lists
        self.grades = grades or {}  # query -> passage -> the relevance judge's grade (relevance.py)
        self.weights, self.dims, self.batch_size, self.seed, self.pad_id = weights, tuple(dims), batch_size, seed, pad_id
        queries = sorted(val_lists)
        self._val = [self.collate(queries[i:i + batch_size], val_lists) for i in range(0, len(queries), batch_size)]

    def collate(self, queries: Sequence[int], lists: dict[int, list[int]] | None = None) -> dict[str, Any]:
        source = self.lists if lists is None else lists
        passages = list(dict.fromkeys(p for q in queries for p in source[q] if p not in queries))
        rows = list(queries) + passages
        ids, mask = padded(self.token_ids, rows, self.pad_id)
        batch = {"input_ids": ids, "attention_mask": mask, "teacher": self.teacher[rows], "queries": len(queries)}
        if lists is None and any(q in self.grades for q in queries):
            batch["judged"] = torch.tensor([[float(self.grades.get(q, {}).get(p) or 0) for p in passages]
                                            for q in queries])
        return batch

    def epoch_batches(self, epoch: int) -> Sequence[dict[str, Any]]:
        order = sorted(self.lists)
        random.Random(f"{self.seed}-{epoch}").shuffle(order)
        groups = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        return [self.collate(group) for group in groups if len(group) > 1 or len(order) == 1]

    def val_batches(self) -> Sequence[dict[str, Any]]:
        return self._val

    def losses(self, model: torch.nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        device = next(model.parameters()).device
        levels = model(batch["input_ids"].to(device), batch["attention_mask"].to(device), self.dims)
        teacher, n = batch["teacher"].to(device), int(batch["queries"])
        out = distill_losses(levels, teacher, self.weights)
        if n and teacher.shape[0] > n and self.weights.listwise_weight > 0:  # 0 when only the judge ranks
            terms = [listwise_kl(student[:n], student[n:], teacher[:n], teacher[n:],
                                 temperature=self.weights.listwise_temperature) for student, _ in levels]
            out["listwise"] = torch.stack(terms).mean()
            out["loss"] = out["loss"] + self.weights.listwise_weight * out["listwise"]
        if "judged" in batch and self.weights.judge_weight > 0:
            judged = batch["judged"].to(device)
            terms = [judged_listwise(student[:n], student[n:], judged, temperature=self.weights.listwise_temperature)
                     for student, _ in levels]
            out["judged"] = torch.stack(terms).mean()
            out["loss"] = out["loss"] + self.weights.judge_weight * out["judged"]
        return out

    def loss(self, model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        return self.losses(model, batch)["loss"]

    def examples_in(self, batch: dict[str, Any]) -> int:
        return int(batch["input_ids"].shape[0])


def train_rounds(model: DistillStudent, token_ids: list[list[int]], teacher: torch.Tensor, *,
                 queries: list[int], passages: list[int], val_queries: list[int], val_passages: list[int],
                 weights: DistillationSettings, training: TrainingSettings, dims: Sequence[int], pad_id: int,
                 candidate: str, work_dir: Path, fingerprint: str, control: TrainControl,
                 texts: Sequence[str] = (), judge: RelevanceJudge | None = None) -> tuple[LoopResult, dict[str, Any]]:
    """Mine, (grade with the relevance judge,) train, repeat `weights.mining_rounds` times; returns the last
    round's loop result and mining stats."""
    rounds = weights.mining_rounds
    per_round = training.model_copy(update={"max_steps": math.ceil(training.max_steps / rounds)}) \
        if training.max_steps else training
    batch = max(training.batch_size, 32)
    val_lists = _teacher_lists(teacher, val_queries, val_passages, weights.listwise_candidates)
    result: LoopResult | None = None
    stats: list[dict[str, Any]] = []
    for r in range(rounds):
        folder = work_dir / f"round-{r}"
        if (folder / _DONE).exists() and (folder / _RESULT).exists():
            model.load_state_dict(torch.load(folder / _DONE, weights_only=True))
            result = LoopResult(**json.loads((folder / _RESULT).read_text("utf-8")))
            continue
        folder.mkdir(parents=True, exist_ok=True)
        lists_file = folder / _LISTS
        if lists_file.exists():
            lists = {int(q): c for q, c in json.loads(lists_file.read_text("utf-8")).items()}
        else:
            student = student_vectors(model, token_ids, queries + passages, pad_id=pad_id, batch_size=batch)
            mined = mine_candidates(teacher[queries], teacher[passages], student[:len(queries)], student[len(queries):],
                                    candidates=weights.listwise_candidates, hard_negatives=weights.hard_negatives)
            lists = {q: [passages[p] for p in found] for q, found in zip(queries, mined, strict=True)}
            lists_file.write_text(json.dumps(lists), encoding="utf-8")
        hard = weights.listwise_candidates - weights.hard_negatives
        stats.append({"round": r, "queries": len(lists),
                      "hard_negatives": sum(len(c) - min(hard, len(c)) for c in lists.values())})
        grades = None
        if judge is not None:
            grades, stats[-1]["judged"] = _judge_lists(judge, texts, lists)
        log.info("%s: round %d of %d, %d queries over %d passages", candidate, r + 1, rounds, len(lists), len(passages))
        task = ListwiseDistillTask(model, token_ids, teacher, lists=lists, val_lists=val_lists, weights=weights,
                                   dims=dims, batch_size=training.batch_size, seed=training.seed + r, pad_id=pad_id,
                                   grades=grades)
        result = run_training(task, per_round, candidate=candidate, work_dir=folder,
                              fingerprint=f"{fingerprint}-round{r}", control=control)
        torch.save(model.state_dict(), folder / _DONE)
        (folder / _RESULT).write_text(json.dumps(result.to_json()), encoding="utf-8")
    assert result is not None  # mining_rounds >= 1
    return result, {"rounds": stats, "queries": len(queries), "passages": len(passages)}


def _judge_lists(judge: RelevanceJudge, texts: Sequence[str],
                 lists: dict[int, list[int]]) -> tuple[dict[int, dict[int, int]], dict[str, Any]]:
    """The judge's grade of every (query, candidate) pair of the round, and counts for the artifact."""
    pairs = [(q, p) for q, candidates in lists.items() for p in candidates]
    found = judge.grade([(texts[q], texts[p]) for q, p in pairs])
    grades: dict[int, dict[int, int]] = {}
    for (q, p), grade in zip(pairs, found, strict=True):
        if grade is not None:
            grades.setdefault(q, {})[p] = grade
    graded = [g for g in found if g is not None]
    return grades, {"pairs": len(pairs), "unreadable": len(pairs) - len(graded),
                    "relevant": sum(g >= 2 for g in graded),
                    "queries_with_a_relevant_passage": sum(any(g >= 2 for g in row.values()) for row in grades.values())}


def _teacher_lists(teacher: torch.Tensor, queries: list[int], passages: list[int], k: int) -> dict[int, list[int]]:
    if not queries or not passages:
        return {}
    top = (teacher[queries] @ teacher[passages].T).topk(min(k, len(passages)), dim=-1).indices.tolist()
    return {q: [passages[p] for p in row] for q, row in zip(queries, top, strict=True)}
