"""Causal-LM LoRA SFT: the student learns to write the teacher's answer to the same request.

The request is rendered by the model's chat template (tools and tool calls with the shared text
convention in `services.models.runtime.chat_format`); the loss covers the answer tokens only.
Too-long prompts lose tokens from the left of the prompt, never from the answer, and are counted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from services.domain.artifacts import StudentArtifact, StudentKind
from services.domain.errors import TrainingFailed
from services.domain.labels import LabelParser
from services.domain.prompts import strip_static
from services.domain.records import content_text
from services.models.locks import MODEL_LOAD_LOCK
from services.models.runtime.chat_format import answer_turn, prompt_text
from services.models.training import artifacts
from services.models.training.base import TrainControl, TrainRequest
from services.models.training.batching import IGNORE_INDEX, TokenizedExample, batch_order, collate, padding_share
from services.models.training.loop import clear_checkpoints, mixed_precision, run_training, seed_everything

log = logging.getLogger(__name__)
AUTO_MAX_LENGTH = 4096  # training.max_seq_length null: every example whole up to this many tokens


def tokenize_chat_example(
    tokenizer: Any, line: dict[str, Any], *, max_length: int
) -> tuple[TokenizedExample, bool] | None:
    """(prompt + answer ids with answer-only labels, truncated?) or None when the answer alone is too long."""
    messages = line["messages"]
    if not messages or messages[-1].get("role") != "assistant":
        return None
    tools = line.get("tools")
    prompt = prompt_text(tokenizer, messages[:-1], tools)
    answer = answer_turn(tokenizer, messages[:-1], messages[-1], tools)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    if not answer_ids or len(answer_ids) >= max_length:
        return None
    truncated = len(prompt_ids) + len(answer_ids) > max_length
    if truncated:
        prompt_ids = prompt_ids[len(prompt_ids) + len(answer_ids) - max_length:]
    ids = prompt_ids + answer_ids
    labels = [IGNORE_INDEX] * len(prompt_ids) + answer_ids
    return TokenizedExample(ids, labels), truncated


def answer_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy over answer tokens, computing logits only where answers are.

    Batches are left-padded, so every answer ends at the last position: the logits of the last
    `longest answer + 1` positions are all the loss needs. The LM head and the softmax over the
    vocabulary (49k entries for SmolLM2) then run on a handful of positions instead of the whole
    prompt. Position ids skip the left padding, so each row sees the positions it would alone.
    """
    device = next(model.parameters()).device
    ids, mask, labels = (batch[k].to(device) for k in ("input_ids", "attention_mask", "labels"))
    answer_start = (labels != IGNORE_INDEX).int().argmax(dim=1)
    keep = int((ids.shape[1] - answer_start).max()) + 1
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep).logits
    targets = labels[:, ids.shape[1] - keep + 1:]
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX
    )


class CausalLMTask:
    """The loop's view of a causal-LM LoRA run."""

    def __init__(self, model: torch.nn.Module, train: list[TokenizedExample], val: list[TokenizedExample], *,
                 batch_size: int, seed: int, grouped: bool, pad_id: int) -> None:
        self.model, self.train, self.val = model, train, val
        self.batch_size, self.seed, self.grouped, self.pad_id = batch_size, seed, grouped, pad_id
        self._lengths = [len(e) for e in train]
        self._val_batches = [collate(val[i:i + batch_size], pad_id=pad_id, left=True)
                             for i in range(0, len(val), batch_size)]

    def epoch_batches(self, epoch: int) -> Sequence[dict[str, torch.Tensor]]:
        order = batch_order(self._lengths, batch_size=self.batch_size, seed=self.seed, epoch=epoch,
                            grouped=self.grouped)
        return _LazyBatches(order, self.train, self.pad_id)

    def val_batches(self) -> Sequence[dict[str, torch.Tensor]]:
        return self._val_batches

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return answer_loss(model, batch)

    def examples_in(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["input_ids"].shape[0])


class _LazyBatches(Sequence[dict[str, torch.Tensor]]):
    """Collate on access: an epoch's batches are not all held as tensors at once."""

    def __init__(self, order: list[list[int]], examples: list[TokenizedExample], pad_id: int) -> None:
        self.order, self.examples, self.pad_id = order, examples, pad_id

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return collate([self.examples[i] for i in self.order[index]], pad_id=self.pad_id, left=True)


def load_base(path: Any, *, precision: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[mixed_precision(precision)]
    with MODEL_LOAD_LOCK:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype if dtype != torch.float16 else torch.float32)
    return model, tokenizer


def lora_config(request: TrainRequest, task_type: str) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=request.lora.rank, lora_alpha=request.lora.alpha, lora_dropout=request.lora.dropout,
                      target_modules=request.lora.target_modules, task_type=task_type)


class CausalLMLoraTrainer:
    kind = StudentKind.CAUSAL_LM_LORA

    def train(self, request: TrainRequest, control: TrainControl) -> StudentArtifact:
        from peft import get_peft_model

        settings = request.training
        seed_everything(settings.seed)
        model, tokenizer = load_base(request.base_model_path, precision=settings.precision)
        if settings.gradient_checkpointing:
            model.gradient_checkpointing_enable()
            model.enable_input_require_grads()
        model = get_peft_model(model, lora_config(request, "CAUSAL_LM"))
        trainable, total = model.get_nb_trainable_parameters()
        train_lines, val_lines = (pruned_lines(request, request.dataset.read_split(name)) for name in ("train", "val"))
        max_length = settings.max_seq_length or AUTO_MAX_LENGTH  # null: every example whole, up to the cap
        train, truncated_train, skipped_train = _tokenize(tokenizer, train_lines, max_length)
        val, truncated_val, skipped_val = _tokenize(tokenizer, val_lines, max_length)
        if not train:
            raise TrainingFailed(f"{request.candidate}: no usable training examples (all answers exceed "
                                 f"max_seq_length={max_length})", reason="bad_data")
        if truncated_train:
            log.warning("%s: %d of %d training examples cut at max_seq_length=%d (from the start of the prompt); "
                        "leave training.max_seq_length unset to size it from the data", request.candidate,
                        truncated_train, len(train), max_length)
        log.info("%s: %d train / %d val examples, %d truncated, LoRA %d of %d parameters trainable",
                 request.candidate, len(train), len(val), truncated_train, trainable, total)
        task = CausalLMTask(model, train, val, batch_size=settings.batch_size, seed=settings.seed,
                            grouped=settings.batching == "length_grouped", pad_id=tokenizer.pad_token_id)
        result = run_training(task, settings, candidate=request.candidate, work_dir=request.work_dir,
                              fingerprint=request.fingerprint(), control=control)
        def save(staged: Path) -> None:
            model.save_pretrained(str(staged / "adapter"))
            tokenizer.save_pretrained(str(staged / "adapter"))

        metrics = {
            **result.to_json(),
            "train_examples": len(train),
            "val_examples": len(val),
            "truncated_examples": truncated_train + truncated_val,
            "max_seq_length": max_length,
            "longest_example_tokens": max(len(e) for e in train + val),
            "skipped_examples": skipped_train + skipped_val,
            "trainable_parameters": trainable,
            "total_parameters": total,
            "padding_share_first_epoch": round(padding_share(task.epoch_batches(0)[:50]), 4),
            "mean_input_tokens": round(sum(len(e) for e in train) / len(train), 1),
            **prompt_token_metrics(request, tokenizer),
        }
        template = None
        if request.label_pattern and request.labels:  # a label student: served by scoring the rendered labels
            template = LabelParser(request.label_pattern).first_template(
                content_text(line["messages"][-1].get("content")) for line in request.dataset.read_split("train"))
        artifact = artifacts.publish(request, save, metrics=metrics, labels=request.labels if template else None,
                                     answer_template=template)
        clear_checkpoints(request.work_dir)
        return artifact


def pruned_lines(request: TrainRequest, lines: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Training lines with the static prompt replaced by the task tag (pruned students); lines whose
    prompt differs are kept as they are."""
    static, tag = request.static_prompt, request.prompt_tag
    for line in lines:
        if static is not None and tag is not None:
            stripped = strip_static(line["messages"][:-1], static, tag)
            if stripped is not None:
                line = {**line, "messages": [*stripped, line["messages"][-1]]}
        yield line


def prompt_token_metrics(request: TrainRequest, tokenizer: Any, sample: int = 200) -> dict[str, Any]:
    """Mean prompt tokens per request with and without pruning, on the first `sample` train lines."""
    if request.prompt_tag is None:
        return {"pruned": False}
    full: list[int] = []
    pruned: list[int] = []
    for _, line in zip(range(sample), request.dataset.read_split("train"), strict=False):
        for out, source in ((full, line), (pruned, next(pruned_lines(request, [line])))):
            out.append(len(tokenizer(prompt_text(tokenizer, source["messages"][:-1], source.get("tools")),
                                     add_special_tokens=False)["input_ids"]))
    return {"pruned": True, "prompt_tokens_unpruned_mean": round(sum(full) / max(len(full), 1), 1),
            "prompt_tokens_pruned_mean": round(sum(pruned) / max(len(pruned), 1), 1)}


def _tokenize(tokenizer: Any, lines: Any, max_length: int) -> tuple[list[TokenizedExample], int, int]:
    examples, truncated, skipped = [], 0, 0
    for line in lines:
        out = tokenize_chat_example(tokenizer, line, max_length=max_length)
        if out is None:
            skipped += 1
            continue
        examples.append(out[0])
        truncated += out[1]
    return examples, truncated, skipped

