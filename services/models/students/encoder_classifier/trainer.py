"""Encoder classifier: a small encoder (MiniLM) with a classification head over the last user turn.

Labels come from the dataset (manifest label set, or `workloads.<id>.labels`); targets are parsed
from the teacher's answers with the workload's label pattern. The artifact records the teacher's
answer format (e.g. `[[[{label}]]]`) so that, served behind the chat API, the student answers
exactly as the teacher would.
The model is `services.models.students.encoder_classifier.runtime.MeanPoolClassifier` (mean-pooled encoder +
linear head). LoRA on the encoder (default; the head is trained in full) or a full fine-tune
(`training.finetune: full`). A LoRA encoder is merged before saving: serving needs no peft.
`finetune: head` fits a logistic-regression head on the frozen encoder (head.py); `head_full` fits that
head on the train split first and then fine-tunes every weight from it (linear probing then fine-tuning,
Kumar et al. 2022: a random head's first gradients distort the pretrained features), the TF-IDF half
kept beside it as in `head`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from services.domain.artifacts import StudentArtifact, StudentKind
from services.domain.errors import TrainingFailed
from services.domain.labels import LabelParser
from services.domain.settings import DEFAULT_LABEL_PATTERN
from services.models.locks import MODEL_LOAD_LOCK
from services.models.runtime.chat_format import content_text, last_user_text
from services.models.students.encoder_classifier.runtime import (
    CONFIDENCE,
    MeanPoolClassifier,
    confidence_of,
    save_calibration,
)
from services.models.training import artifacts
from services.models.training.base import TrainControl, TrainRequest
from services.models.training.batching import TokenizedExample, batch_order, collate
from services.models.training.loop import clear_checkpoints, run_training, seed_everything

log = logging.getLogger(__name__)
# BERT-family linear layers; "all-linear" on a sequence classifier would also wrap the head.
ENCODER_LORA_TARGETS = ["query", "key", "value", "dense"]
ENCODER_MAX_LENGTH = 512  # training.max_seq_length null: BERT-family position limit (headlines use ~40)


def labelled_texts(
    lines: Iterable[dict[str, Any]], parser: LabelParser
) -> tuple[list[tuple[str, str]], Counter[str], str | None]:
    """(last user text, label) pairs, count of answers that did not parse, the teacher's answer template."""
    pairs: list[tuple[str, str]] = []
    unparsed: Counter[str] = Counter()
    template = None
    for line in lines:
        answer = content_text(line["messages"][-1].get("content"))
        label = parser.parse(answer)
        if label is None:
            unparsed["unparsed"] += 1
            continue
        template = template or parser.template_from(answer)
        pairs.append((last_user_text(line["messages"][:-1]), label))
    return pairs, unparsed, template


class EncoderClassifierTask:
    def __init__(self, model: torch.nn.Module, train: list[TokenizedExample], val: list[TokenizedExample], *,
                 batch_size: int, seed: int, grouped: bool, pad_id: int) -> None:
        self.model, self.train, self.batch_size, self.seed, self.grouped, self.pad_id = (
            model, train, batch_size, seed, grouped, pad_id)
        self._lengths = [len(e) for e in train]
        self._val = [collate(val[i:i + batch_size], pad_id=pad_id) for i in range(0, len(val), batch_size)]

    def epoch_batches(self, epoch: int) -> Sequence[dict[str, torch.Tensor]]:
        order = batch_order(self._lengths, batch_size=self.batch_size, seed=self.seed, epoch=epoch, grouped=self.grouped)
        return [collate([self.train[i] for i in batch], pad_id=self.pad_id) for batch in order]

    def val_batches(self) -> Sequence[dict[str, torch.Tensor]]:
        return self._val

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        device = next(model.parameters()).device
        logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
        return torch.nn.functional.cross_entropy(logits.float(), batch["targets"].to(device))

    def examples_in(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["input_ids"].shape[0])


class EncoderClassifierTrainer:
    kind = StudentKind.ENCODER_CLASSIFIER

    def train(self, request: TrainRequest, control: TrainControl) -> StudentArtifact:
        from transformers import AutoModel, AutoTokenizer

        settings = request.training
        seed_everything(settings.seed)
        parser = LabelParser(request.label_pattern or DEFAULT_LABEL_PATTERN, request.labels)
        train_pairs, unparsed_train, template = labelled_texts(request.dataset.read_split("train"), parser)
        val_pairs, unparsed_val, _ = labelled_texts(request.dataset.read_split("val"), parser)
        labels = list(request.labels or sorted({label for _, label in train_pairs + val_pairs}))
        if len(labels) < 2 or not train_pairs:
            raise TrainingFailed(f"{request.candidate}: a classifier needs at least 2 labels and some parsed "
                                 f"answers; found {len(labels)} labels, {len(train_pairs)} examples", reason="bad_data")
        index = {label: i for i, label in enumerate(labels)}
        tokenizer = AutoTokenizer.from_pretrained(str(request.base_model_path))
        with MODEL_LOAD_LOCK:
            try:  # the pooler is unused (mean pooling): do not load or train it
                encoder = AutoModel.from_pretrained(str(request.base_model_path), add_pooling_layer=False)
            except TypeError:  # architectures without a pooler
                encoder = AutoModel.from_pretrained(str(request.base_model_path))
        if settings.finetune == "head":
            return self._train_head(request, control, encoder, tokenizer, labels, train_pairs + val_pairs, index,
                                    template, unparsed_train["unparsed"] + unparsed_val["unparsed"])
        lexical, head_metrics, extra = None, {}, []
        if settings.finetune == "head_full":  # the head first, then every weight from there
            model = MeanPoolClassifier(encoder, len(labels), normalize=True)
            extra = _prompt_extra(request, labels, index)
            fitted = _fit_head(request, control, model, tokenizer, train_pairs, index, extra)
            lexical = fitted.pop("lexical")  # its out-of-fold calibration is the head's, not the student's: val's is
            head_metrics = {key: fitted[key] for key in ("C", "oof_macro_f1", "train_seconds", "prompt_examples")}
        else:
            if settings.finetune == "lora":
                from peft import LoraConfig, get_peft_model

                targets = (ENCODER_LORA_TARGETS if request.lora.target_modules == "all-linear"
                           else request.lora.target_modules)
                encoder = get_peft_model(encoder, LoraConfig(
                    r=request.lora.rank, lora_alpha=request.lora.alpha, lora_dropout=request.lora.dropout,
                    target_modules=targets))
            model = MeanPoolClassifier(encoder, len(labels))
        max_length = settings.max_seq_length or ENCODER_MAX_LENGTH
        train = _encode(tokenizer, train_pairs + [(text, labels[target]) for text, target in extra], index, max_length)
        val_pairs = [(text, label) for text, label in val_pairs if label in index]  # in step with `val`
        val = _encode(tokenizer, val_pairs, index, max_length)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        task = EncoderClassifierTask(model, train, val, batch_size=settings.batch_size, seed=settings.seed,
                                     grouped=settings.batching == "length_grouped", pad_id=pad_id)
        result = run_training(task, settings, candidate=request.candidate, work_dir=request.work_dir,
                              fingerprint=request.fingerprint(), control=control)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        if settings.finetune == "lora":
            model.encoder = model.encoder.merge_and_unload()  # type: ignore[operator]  # a peft model held as a Module
        meta = {"labels": labels, "answer_template": template or "{label}", "max_length": max_length,
                "confidence": CONFIDENCE, "normalize": model.normalize}
        calibration = _val_calibration(model, val, pad_id, lexical, [text for text, _ in val_pairs]) if val else None

        def save(staged: Path) -> None:
            model.save(staged / "model", tokenizer, meta)
            if lexical is not None:
                lexical.save(staged / "model")
            if calibration is not None:
                save_calibration(staged, calibration)

        metrics = {
            **result.to_json(),
            "train_examples": len(train),
            "val_examples": len(val),
            "unparsed_answers": unparsed_train["unparsed"] + unparsed_val["unparsed"],
            "trainable_parameters": trainable,
            "label_counts": dict(Counter(label for _, label in train_pairs)),
            **{f"head_{key}": value for key, value in head_metrics.items()},
        }
        artifact = artifacts.publish(request, save, metrics=metrics, labels=labels,
                                     answer_template=template or "{label}")
        clear_checkpoints(request.work_dir)
        return artifact


    def _train_head(self, request: TrainRequest, control: TrainControl, encoder: torch.nn.Module, tokenizer: Any,
                    labels: list[str], pairs: list[tuple[str, str]], index: dict[str, int], template: str | None,
                    unparsed: int) -> StudentArtifact:
        """Frozen encoder + logistic-regression head (encoder_classifier/head.py). Train and val
        records are both fitted on: the head needs no early stopping, and cross-fitting replaces validation."""
        max_length = request.training.max_seq_length or ENCODER_MAX_LENGTH
        model = MeanPoolClassifier(encoder, len(labels), normalize=True)
        pairs = [(text, label) for text, label in pairs if label in index]
        metrics = _fit_head(request, control, model, tokenizer, pairs, index, _prompt_extra(request, labels, index))
        calibration = metrics.pop("calibration")
        lexical = metrics.pop("lexical")
        meta = {"labels": labels, "answer_template": template or "{label}", "max_length": max_length, "normalize": True,
                "confidence": CONFIDENCE}

        def save(staged: Path) -> None:
            model.save(staged / "model", tokenizer, meta)
            if lexical is not None:
                lexical.save(staged / "model")
            save_calibration(staged, calibration)

        metrics.update(train_examples=len(pairs), val_examples=0, unparsed_answers=unparsed,
                       trainable_parameters=model.head.weight.numel() + model.head.bias.numel(),
                       label_counts=dict(Counter(label for _, label in pairs)))
        return artifacts.publish(request, save, metrics=metrics, labels=labels, answer_template=template or "{label}")


def _fit_head(request: TrainRequest, control: TrainControl, model: MeanPoolClassifier, tokenizer: Any,
              pairs: list[tuple[str, str]], index: dict[str, int], extra: list[tuple[str, int]]) -> dict[str, Any]:
    """The cross-fitted head (and its TF-IDF half) on `pairs`, set in `model`: `train_head`'s metrics, with the
    out-of-fold `calibration` and the `lexical` head."""
    from services.models.students.encoder_classifier.head import train_head

    settings = request.training
    pairs = [(text, label) for text, label in pairs if label in index]
    metrics = train_head(model, tokenizer, [t for t, _ in pairs], [index[label] for _, label in pairs],
                         candidate=request.candidate, max_length=settings.max_seq_length or ENCODER_MAX_LENGTH,
                         seed=settings.seed, on_progress=control.on_progress, should_cancel=control.should_cancel,
                         lexical_mix=settings.lexical_mix, extra=extra)
    log.info("%s: head fitted on %d records (C=%s, out-of-fold macro-F1 %.3f) in %.1f s", request.candidate,
             len(pairs), metrics["C"], metrics["oof_macro_f1"], metrics["train_seconds"])
    return metrics


def _prompt_extra(request: TrainRequest, labels: list[str], index: dict[str, int]) -> list[tuple[str, int]]:
    """The teacher's static prompt as labelled examples (`training.prompt_examples`), or none."""
    from services.models.students.encoder_classifier.head import prompt_examples

    static = request.dataset.manifest.get("static_prompt") or {}
    if not (request.training.prompt_examples and static.get("system")):
        return []
    extra = [(text, index[label]) for text, label in prompt_examples(static["system"], labels)]
    log.info("%s: %d labelled examples from the teacher's static prompt", request.candidate, len(extra))
    return extra


@torch.inference_mode()
def _val_calibration(model: MeanPoolClassifier, val: list[TokenizedExample], pad_id: int, lexical: Any = None,
                     texts: list[str] | None = None) -> dict[str, Any]:
    """(confidence, correct) of the trained student on the val split, never trained on (it chose the best
    step by val loss only): where a fine-tuned student's selective threshold is chosen (docs/selective.md).
    With a TF-IDF half (`lexical`, `texts` in val order), of the mix the student serves."""
    model.eval()
    device = next(model.parameters()).device
    confidence: list[float] = []
    correct: list[bool] = []
    for start in range(0, len(val), 64):
        batch = collate(val[start:start + 64], pad_id=pad_id)
        probs = torch.softmax(model(batch["input_ids"].to(device), batch["attention_mask"].to(device)).float(), -1)
        probs_np = probs.cpu().numpy()
        if lexical is not None and texts is not None:
            probs_np = (1 - lexical.mix) * probs_np + lexical.mix * lexical.probabilities(texts[start:start + 64])
        confidence += [round(float(x), 6) for x in confidence_of(probs_np)]
        correct += [bool(x) for x in (probs_np.argmax(axis=1) == batch["targets"].numpy())]
    return {"confidence": confidence, "correct": correct, "source": "val split"}


def _encode(tokenizer: Any, pairs: list[tuple[str, str]], index: dict[str, int], max_length: int) -> list[TokenizedExample]:
    if not pairs:
        return []
    encoded = tokenizer([text for text, _ in pairs], truncation=True, max_length=max_length)["input_ids"]
    return [TokenizedExample(ids, target=index[label]) for ids, (_, label) in zip(encoded, pairs, strict=True)
            if label in index]
