"""Embedding distillation: a small encoder learns to place texts where the teacher embedding model does.

Data: embedding log records (`request.input` a text or a list of texts, `response.data[i].embedding`
floats or base64 float32). Texts whose record carries no usable vector are embedded by the teacher
model at `request.teacher_model_path`, cached on disk by text hash. Teacher vectors are used as unit
vectors.

Losses (weights from `settings.distillation`), averaged over the full dimension and every
Matryoshka size d in `matryoshka_dims` (the student's first d values):
- MSE: mean squared error over the elements (as sentence-transformers' MSELoss) between the
  (projected) student and the teacher; a per-vector sum instead outweighs the similarity term
  and, through the projection, lets the student's own geometry drift (seen in the unit test);
- cosine: 1 - cosine(projected student, teacher);
- relative similarity: MSE between the student's and the teacher's in-batch cosine matrices
  (needs no projection, so the student's own geometry is what is trained);
- listwise (when listwise_weight > 0 and the logs hold queries and passages): the teacher's ranking of
  each query's candidate passages, with hard negatives re-mined by the student each round (`listwise.py`);
- soup (distillation.soup, with listwise rounds): the vector-loss recipe also trained from the same start, and
  the served weights the mean of both students' (`soup.py`, `soup_with_vector_recipe`);
- contrastive (when contrastive_weight > 0): symmetric in-batch InfoNCE with `temperature` over
  query/positive pairs. Convention: a record whose `request.input` is a list of exactly two texts is
  a [query, positive] pair (both texts are also distillation examples). Other records' texts are
  singles.
When student and teacher dimensions differ, a linear projection W (teacher_dim x student_dim) maps the
student into the teacher's space for MSE/cosine; at Matryoshka size d the first d columns of the same
W are used, so one projection serves every size. It starts from the least-squares fit of the
untrained student to the teacher (the loop gives every parameter one learning rate, far too small
to learn a projection from random). Without a projection (equal dimensions), truncated sizes train
the similarity and contrastive terms only.

Artifact: the student as a sentence-transformers directory (LoRA merged into the weights, so it
serves at full speed; `Embedder` and `SentenceTransformer` both load it) with the projection in
`projection/` for reference. Metrics: the loop's, plus cosine to the teacher and similarity-matrix
error on val before and after training.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from services.domain.artifacts import StudentArtifact, StudentKind
from services.domain.errors import TrainingFailed
from services.domain.settings import DistillationSettings
from services.models.locks import MODEL_LOAD_LOCK
from services.models.students.embedding_distill.data import (
    TEACHER_CACHE_DIR,
    DistillData,
    embed_with_cache,
    read_distill_data,
    teacher_cache_dir,
)
from services.models.students.embedding_distill.model import DistillStudent, distill_losses, padded, student_vectors
from services.models.students.embedding_distill.runtime import SentenceTransformerLayout, quiet_loading
from services.models.students.embedding_distill.soup import average_state_dicts, state_copy
from services.models.training import artifacts
from services.models.training.base import TrainControl, TrainRequest
from services.models.training.batching import batch_order
from services.models.training.loop import clear_checkpoints, run_training, seed_everything

log = logging.getLogger(__name__)
PROJECTION_DIR = "projection"
_SOUP_DIR = "soup-vector"  # the soup's vector-loss ingredient (distillation.soup)
_FIT_TEXTS = 1024  # texts the projection's least-squares start is fitted on
_ST_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")


# --- the loop's task ----------------------------------------------------------------------------------


class EmbeddingDistillTask:
    """The loop's view of a distillation run: items -> padded token batches with teacher vectors."""

    def __init__(
        self,
        model: DistillStudent,
        token_ids: list[list[int]],
        teacher: torch.Tensor,
        train_items: list[tuple[int, ...]],
        val_items: list[tuple[int, ...]],
        *,
        weights: DistillationSettings,
        dims: Sequence[int],
        batch_size: int,
        seed: int,
        grouped: bool,
        pad_id: int,
    ) -> None:
        self.model, self.token_ids, self.teacher = model, token_ids, teacher
        self.train_items, self.weights, self.dims = train_items, weights, tuple(dims)
        self.batch_size, self.seed, self.grouped, self.pad_id = batch_size, seed, grouped, pad_id
        self._lengths = [max(len(token_ids[i]) for i in item) for item in train_items]
        by_length = sorted(val_items, key=lambda item: -max(len(token_ids[i]) for i in item))
        self._val = [self.collate(by_length[i:i + batch_size]) for i in range(0, len(by_length), batch_size)]

    def collate(self, items: Sequence[tuple[int, ...]]) -> dict[str, torch.Tensor]:
        rows = [i for item in items for i in item]
        ids, mask = padded(self.token_ids, rows, self.pad_id)
        pairs, position = [], 0
        for item in items:
            if len(item) == 2:
                pairs.append((position, position + 1))
            position += len(item)
        return {"input_ids": ids, "attention_mask": mask, "teacher": self.teacher[rows],
                "pairs": torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)}

    def epoch_batches(self, epoch: int) -> Sequence[dict[str, torch.Tensor]]:
        order = batch_order(self._lengths, batch_size=self.batch_size, seed=self.seed, epoch=epoch,
                            grouped=self.grouped)
        # Items of one batch only; collated when the loop asks (an epoch is not held as tensors).
        return _LazyBatches([[self.train_items[i] for i in batch] for batch in order], self)

    def val_batches(self) -> Sequence[dict[str, torch.Tensor]]:
        return self._val

    def losses(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        device = next(model.parameters()).device
        levels = model(batch["input_ids"].to(device), batch["attention_mask"].to(device), self.dims)
        pairs = batch["pairs"].to(device) if batch["pairs"].numel() else None
        return distill_losses(levels, batch["teacher"].to(device), self.weights, pairs=pairs)

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.losses(model, batch)["loss"]

    def examples_in(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["input_ids"].shape[0])


class _LazyBatches(Sequence[dict[str, torch.Tensor]]):
    def __init__(self, batches: list[list[tuple[int, ...]]], task: EmbeddingDistillTask) -> None:
        self.batches, self.task = batches, task

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self.task.collate(self.batches[index])


# --- the trainer ----------------------------------------------------------------------------------------


class EmbeddingDistillTrainer:
    kind = StudentKind.EMBEDDING_DISTILL

    def train(self, request: TrainRequest, control: TrainControl) -> StudentArtifact:
        from transformers import AutoModel, AutoTokenizer

        settings = request.training
        weights = request.distillation or DistillationSettings()
        seed_everything(settings.seed)
        train_data = read_distill_data(request.dataset.read_split("train"), query_max_words=weights.query_max_words)
        val_data = read_distill_data(request.dataset.read_split("val"), query_max_words=weights.query_max_words) \
            if "val" in request.dataset.splits else DistillData()
        if not train_data.items:
            raise TrainingFailed(f"{request.candidate}: the train split has no embedding records with text input",
                                 reason="bad_data")
        texts = train_data.texts + val_data.texts
        teacher = self._teacher_matrix(request, texts, train_data.vectors + val_data.vectors)
        offset = len(train_data.texts)
        val_items = [tuple(i + offset for i in item) for item in val_data.items]

        layout = SentenceTransformerLayout(Path(request.base_model_path))
        with quiet_loading(), MODEL_LOAD_LOCK:
            tokenizer = AutoTokenizer.from_pretrained(str(layout.transformer_path))
            encoder = AutoModel.from_pretrained(str(layout.transformer_path))
        student_dim = int(encoder.config.hidden_size)
        limit = layout.max_seq_length or 512
        max_length = min(settings.max_seq_length or limit, limit)
        prepared = [t.lower() for t in texts] if layout.do_lower_case else texts
        token_ids = tokenizer(prepared, truncation=True, max_length=max_length)["input_ids"]
        dims = [student_dim] + sorted({d for d in weights.matryoshka_dims if d < student_dim}, reverse=True)

        model = DistillStudent(encoder, pooling=layout.pooling, student_dim=student_dim, teacher_dim=teacher.shape[1])
        if model.projection is not None:
            rows = sorted({i for item in train_data.items[:_FIT_TEXTS] for i in item})
            student = student_vectors(model, token_ids, rows, pad_id=tokenizer.pad_token_id,
                                       batch_size=max(settings.batch_size, 32))
            fit_projection(model.projection, student, teacher[rows])
        if settings.finetune == "lora":
            from peft import LoraConfig, get_peft_model

            model.encoder = get_peft_model(encoder, LoraConfig(
                r=request.lora.rank, lora_alpha=request.lora.alpha, lora_dropout=request.lora.dropout,
                target_modules=request.lora.target_modules, task_type="FEATURE_EXTRACTION"))
        _freeze_unused(model)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        if weights.contrastive_weight > 0 and train_data.pairs < 2:
            log.warning("%s: contrastive_weight > 0 but the train split has %d query/positive pairs "
                        "(records whose input is a list of 2 texts); the contrastive term stays off",
                        request.candidate, train_data.pairs)
        log.info("%s: %d train / %d val texts (%d pairs), student %d-d -> teacher %d-d, sizes %s, %s: %d of %d "
                 "parameters trainable", request.candidate, offset, len(val_data.texts), train_data.pairs,
                 student_dim, teacher.shape[1], dims, settings.finetune, trainable, total)

        task = EmbeddingDistillTask(model, token_ids, teacher, train_data.items, val_items, weights=weights,
                                    dims=dims, batch_size=settings.batch_size, seed=settings.seed,
                                    grouped=settings.batching == "length_grouped", pad_id=tokenizer.pad_token_id)
        before = evaluate_agreement(task) if val_items else {}
        queries, passages = train_data.with_role("query"), train_data.with_role("passage")
        ranking: dict[str, Any] | None = None
        ranked = weights.listwise_weight > 0 or request.relevance_judge is not None
        if ranked and min(len(queries), len(passages)) >= 2:
            from services.models.students.embedding_distill.listwise import train_rounds

            start = state_copy(model) if weights.soup else None
            result, ranking = train_rounds(
                model, token_ids, teacher, queries=queries, passages=passages,
                val_queries=[i + offset for i in val_data.with_role("query")],
                val_passages=[i + offset for i in val_data.with_role("passage")], weights=weights, training=settings,
                dims=dims, pad_id=tokenizer.pad_token_id, candidate=request.candidate, work_dir=request.work_dir,
                fingerprint=request.fingerprint(), control=control, texts=texts, judge=_relevance_judge(request))
            if start is not None:
                ingredient = EmbeddingDistillTask(
                    model, token_ids, teacher, train_data.items, val_items, weights=weights, dims=dims,
                    batch_size=weights.soup_batch_size, seed=settings.seed,
                    grouped=settings.batching == "length_grouped", pad_id=tokenizer.pad_token_id)
                ranking["soup"] = soup_with_vector_recipe(model, start, ingredient, request, control)
        else:
            if ranked:
                log.warning("%s: ranking distillation is on but the train split has %d queries and %d passages (input_type, "
                            "or the rule in docs/model-plane.md); training on the vector losses only",
                            request.candidate, len(queries), len(passages))
            result = run_training(task, settings, candidate=request.candidate, work_dir=request.work_dir,
                                  fingerprint=request.fingerprint(), control=control)
        after = evaluate_agreement(task) if val_items else {}

        metrics = {
            **result.to_json(),
            "train_texts": offset,
            "val_texts": len(val_data.texts),
            "pairs": train_data.pairs + val_data.pairs,
            "skipped_records": train_data.skipped_records + val_data.skipped_records,
            "teacher_vectors_computed": sum(v is None for v in train_data.vectors + val_data.vectors),
            "student_dim": student_dim,
            "teacher_dim": int(teacher.shape[1]),
            "matryoshka_dims": dims[1:],
            "projection": model.projection is not None,
            "trainable_parameters": trainable,
            "total_parameters": total,
            "distillation": {"before": before, "after": after},
            "ranking": ranking,
            "val_cosine_to_teacher": after.get("cosine"),
        }

        def save(staged: Path) -> None:
            # Serving keeps the base model's input limit; max_seq_length only bounds training batches.
            save_student(model, tokenizer, Path(request.base_model_path), staged,
                         max_seq_length=layout.max_seq_length or max_length)

        artifact = artifacts.publish(request, save, metrics=metrics)
        clear_checkpoints(request.work_dir)
        for folder in [*request.work_dir.glob("round-*"), request.work_dir / _SOUP_DIR]:  # rounds' and soup's weights
            shutil.rmtree(folder, ignore_errors=True)
        return artifact

    def _teacher_matrix(self, request: TrainRequest, texts: list[str], logged: list[np.ndarray | None]) -> torch.Tensor:
        missing = [i for i, v in enumerate(logged) if v is None]
        vectors = list(logged)
        if missing:
            if request.teacher_model_path is None:
                raise TrainingFailed(
                    f"{request.candidate}: {len(missing)} of {len(texts)} texts have no teacher vector in the logs "
                    "and the candidate names no teacher_model to compute them", reason="bad_data")
            cache = teacher_cache_dir(request.work_dir.parent / TEACHER_CACHE_DIR, Path(request.teacher_model_path))
            computed = embed_with_cache([texts[i] for i in missing], teacher_path=Path(request.teacher_model_path),
                                        cache_dir=cache)
            for i, vector in zip(missing, computed, strict=True):
                vectors[i] = vector
        sizes = {v.shape[0] for v in vectors if v is not None}
        if len(sizes) != 1:
            raise TrainingFailed(f"{request.candidate}: teacher vectors of different sizes {sorted(sizes)}; "
                                 "a workload must use one embedding model", reason="bad_data")
        matrix = torch.from_numpy(np.stack(vectors).astype(np.float32))  # type: ignore[arg-type]  # no None left: missing vectors were computed above
        return F.normalize(matrix, dim=-1)


def soup_with_vector_recipe(model: DistillStudent, start: dict[str, torch.Tensor], ingredient: EmbeddingDistillTask,
                            request: TrainRequest, control: TrainControl) -> dict[str, Any]:
    """Train the vector-loss recipe from `start` (the weights the ranking rounds began from) and leave the
    average of its weights and the ranked student's in `model` (soup.py). The ingredient's weights are kept
    in `<work_dir>/soup-vector/`, so a resumed run does not train it again."""
    folder = request.work_dir / _SOUP_DIR
    folder.mkdir(parents=True, exist_ok=True)
    ranked = state_copy(model)
    if (folder / "weights.pt").exists() and (folder / "result.json").exists():
        vector = torch.load(folder / "weights.pt", weights_only=True)
        result = json.loads((folder / "result.json").read_text("utf-8"))
    else:
        model.load_state_dict(start)
        log.info("%s: soup: training the vector-loss ingredient from the same start (batch %d)",
                 request.candidate, ingredient.batch_size)
        training = request.training.model_copy(update={"batch_size": ingredient.batch_size})
        result = run_training(ingredient, training, candidate=request.candidate, work_dir=folder,
                              fingerprint=f"{request.fingerprint()}-soup-vector", control=control).to_json()
        vector = state_copy(model)
        torch.save(vector, folder / "weights.pt")
        (folder / "result.json").write_text(json.dumps(result), encoding="utf-8")
    model.load_state_dict(average_state_dicts([ranked, vector]))
    return {"ingredients": ["ranking rounds", "vector losses"], "vector_steps": result.get("steps"),
            "vector_best_val_loss": result.get("best_val_loss"), "vector_train_seconds": result.get("train_seconds")}


def _relevance_judge(request: TrainRequest) -> Any:
    """The LLM relevance judge of `distillation.judge_relevance` (relevance.py), its grades cached beside the
    teacher's vectors so every run on the same logs shares them; None when off."""
    if request.relevance_judge is None:
        return None
    from services.models.runtime.llm_endpoint import ChatEndpoint
    from services.models.students.embedding_distill.relevance import RelevanceJudge

    return RelevanceJudge(ChatEndpoint.from_settings(request.relevance_judge),
                          cache_dir=request.work_dir.parent / "relevance-grades")


def _freeze_unused(model: DistillStudent) -> None:
    """Pooler weights get no gradient from token pooling: freeze them so every trainable one is used."""
    for name, parameter in model.named_parameters():
        if ".pooler." in f".{name}":
            parameter.requires_grad_(False)


@torch.no_grad()
def fit_projection(projection: torch.nn.Linear, student: torch.Tensor, teacher: torch.Tensor, *,
                   ridge: float = 1e-2) -> None:
    """Set W, b to the ridge least-squares map from student rows to teacher rows."""
    x = torch.cat([student, torch.ones(len(student), 1)], dim=1).double()
    gram = x.T @ x + ridge * torch.eye(x.shape[1], dtype=torch.float64)
    solution = torch.linalg.solve(gram, x.T @ teacher.double())  # (student_dim + 1) x teacher_dim
    projection.weight.copy_(solution[:-1].T.float())
    projection.bias.copy_(solution[-1].float())


@torch.no_grad()
def evaluate_agreement(task: EmbeddingDistillTask) -> dict[str, Any]:
    """Cosine of the (projected) student to the teacher and similarity-matrix MSE on val, per size."""
    model = task.model
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    students: list[list[torch.Tensor]] = [[] for _ in task.dims]
    projected: list[list[torch.Tensor]] = [[] for _ in task.dims]
    teachers = []
    for batch in task.val_batches():
        levels = model(batch["input_ids"].to(device), batch["attention_mask"].to(device), task.dims)
        for k, (student, proj) in enumerate(levels):
            students[k].append(F.normalize(student.float().cpu(), dim=-1))
            if proj is not None:
                projected[k].append(proj.float().cpu())
        teachers.append(batch["teacher"])
    model.train(was_training)
    teacher = torch.cat(teachers)
    teacher_sim = teacher @ teacher.T
    out: dict[str, Any] = {}
    for k, d in enumerate(task.dims):
        unit = torch.cat(students[k])
        level: dict[str, float] = {"similarity_mse": round(float(F.mse_loss(unit @ unit.T, teacher_sim)), 6)}
        if projected[k]:
            level["cosine"] = round(float(F.cosine_similarity(torch.cat(projected[k]), teacher).mean()), 6)
        if d == task.dims[0]:
            out.update(level)
        else:
            out.setdefault("matryoshka", {})[str(d)] = level
    return out


def save_student(model: DistillStudent, tokenizer: Any, base_path: Path, out: Path, *, max_seq_length: int) -> None:
    """Write the student as a sentence-transformers directory (LoRA merged) plus its projection."""
    encoder = model.encoder
    if hasattr(encoder, "merge_and_unload"):
        encoder = encoder.merge_and_unload()  # type: ignore[operator]  # a peft model held as a Module
        model.encoder = encoder
    encoder.save_pretrained(str(out))  # type: ignore[operator]  # a transformers model held as a Module
    tokenizer.save_pretrained(str(out))
    layout = SentenceTransformerLayout(base_path)
    for name in _ST_FILES:
        if (base_path / name).exists():
            shutil.copy2(base_path / name, out / name)
    if not (out / "modules.json").exists():
        (out / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ], indent=2), encoding="utf-8")
    (out / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": layout.do_lower_case}, indent=2), "utf-8")
    pooling_dir = out / "1_Pooling"
    pooling_dir.mkdir(exist_ok=True)
    pooling_config = dict(layout.pooling_config) or {
        "word_embedding_dimension": model.student_dim, "pooling_mode_cls_token": model.pooling == "cls",
        "pooling_mode_mean_tokens": model.pooling == "mean", "pooling_mode_max_tokens": model.pooling == "max",
        "pooling_mode_mean_sqrt_len_tokens": model.pooling == "mean_sqrt_len"}
    (pooling_dir / "config.json").write_text(json.dumps(pooling_config, indent=2), "utf-8")
    (out / "2_Normalize").mkdir(exist_ok=True)  # sentence-transformers expects the module folder
    if model.projection is not None:
        from safetensors.torch import save_file

        (out / PROJECTION_DIR).mkdir()
        save_file({k: v.detach().cpu().contiguous() for k, v in model.projection.state_dict().items()},
                  str(out / PROJECTION_DIR / "model.safetensors"))
        (out / PROJECTION_DIR / "config.json").write_text(json.dumps({
            "in_features": model.student_dim, "out_features": model.projection.out_features,
            "matryoshka": "size d uses the first d input columns of weight"}, indent=2), "utf-8")
