"""The one training loop every student kind runs.

accelerate (one code path for 1 CPU, 1 GPU or N GPUs under `accelerate launch`/`torchrun`),
gradient accumulation, linear warm-up then linear decay, gradient clipping, validation loss
with early stopping (best weights restored), resumable checkpoints every N steps, a cancel
flag honoured between steps, progress reports, and typed failures (out of memory, diverged).

A student kind supplies a `StudentTask`: its model, its batches and its loss. Batches of an
epoch must be a pure function of (seed, epoch), so a resumed run sees the same order.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import resource
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from services.domain.artifacts import TrainingProgress
from services.domain.errors import TrainingCancelled, TrainingFailed
from services.domain.settings import TrainingSettings
from services.models.runtime.threads import rebalance
from services.models.training.base import TrainControl

log = logging.getLogger(__name__)
Batch = Any
CHECKPOINT = "checkpoint"
MAX_GRAD_NORM = 1.0
VALIDATIONS_PER_RUN = 5  # validation is inference over up to max_val_examples: keep it a small share


class StudentTask(Protocol):
    """What a student kind gives the loop."""

    @property
    def model(self) -> torch.nn.Module:
        """The model the loop trains in place (read only: a kind may hold a subclass)."""
        ...

    def epoch_batches(self, epoch: int) -> Sequence[Batch]:
        """The training batches of one epoch, in order; deterministic for a given epoch."""
        ...

    def val_batches(self) -> Sequence[Batch]:
        ...

    def loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """Mean loss of one batch (model is the accelerate-prepared one)."""
        ...

    def examples_in(self, batch: Batch) -> int:
        ...


@dataclass
class LoopState:
    """Everything needed to resume: saved with every checkpoint."""

    fingerprint: str
    step: int = 0
    epoch: int = 0
    micro_batch: int = 0  # next micro-batch index within the epoch
    examples: int = 0
    train_seconds: float = 0.0
    best_val_loss: float | None = None
    best_step: int | None = None
    evals_without_gain: int = 0
    stopped_early: bool = False
    val_history: list[tuple[int, float]] = field(default_factory=list)
    loss_history: list[tuple[int, float]] = field(default_factory=list)
    resumed_from_step: int | None = None


@dataclass(frozen=True)
class LoopResult:
    steps: int
    epochs: float
    train_loss: float | None
    val_loss: float | None
    best_val_loss: float | None
    best_step: int | None
    stopped_early: bool
    examples: int
    processes: int
    train_seconds: float
    examples_per_s: float
    peak_rss_mb: float
    peak_gpu_mb: float | None
    resumed_from_step: int | None
    val_history: list[tuple[int, float]]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def mixed_precision(precision: str) -> str:
    """accelerate's mixed_precision for the configured precision on this machine."""
    if not torch.cuda.is_available():
        return "no"  # fp32 on CPU: bf16 autocast on CPU is slower here and changes results
    if precision == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def run_training(
    task: StudentTask,
    settings: TrainingSettings,
    *,
    candidate: str,
    work_dir: Path,
    fingerprint: str,
    control: TrainControl | None = None,
) -> LoopResult:
    """Train `task.model` in place; resume from `work_dir` when a checkpoint of the same run is there."""
    from accelerate import Accelerator
    from transformers import get_linear_schedule_with_warmup

    control = control or TrainControl()
    seed_everything(settings.seed)
    accelerator = Accelerator(mixed_precision=mixed_precision(settings.precision), cpu=not torch.cuda.is_available())
    model = task.model
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise TrainingFailed("the model has no trainable parameters", reason="bad_model")
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=settings.weight_decay)

    ga = settings.gradient_accumulation_steps
    world, rank = accelerator.num_processes, accelerator.process_index
    micro_per_epoch = len(_shard(task.epoch_batches(0), world, rank))
    if micro_per_epoch == 0:
        raise TrainingFailed(
            f"no training batches: the train split is smaller than one batch per process ({world})", reason="bad_data"
        )
    steps_per_epoch = math.ceil(micro_per_epoch / ga)
    total_steps = settings.max_steps or steps_per_epoch * settings.epochs
    # The scheduler is stepped by hand once per optimizer step (not prepared), so it counts real steps.
    scheduler = get_linear_schedule_with_warmup(
        optimizer, math.ceil(settings.warmup_ratio * total_steps), total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    eval_every = settings.eval_every_steps or max(1, min(steps_per_epoch, math.ceil(total_steps / VALIDATIONS_PER_RUN)))
    # Validation is forward-only (about a third of a training step per example); capping it at the
    # examples trained between two validations keeps it under ~a third of the run, also for slow models.
    trained_between = eval_every * ga * settings.batch_size
    val_limit = min(settings.max_val_examples or trained_between, trained_between)
    val_batches = _shard(_capped(task, task.val_batches(), val_limit), world, rank)

    state = LoopState(fingerprint=fingerprint)
    best_weights: dict[str, torch.Tensor] | None = None
    checkpoint_dir = work_dir / CHECKPOINT
    if (checkpoint_dir / "state.json").exists():
        loaded = _load_checkpoint(checkpoint_dir, fingerprint, accelerator.unwrap_model(model), optimizer, scheduler)
        if loaded is not None:
            state, best_weights = loaded
            state.resumed_from_step = state.step
            log.info("%s: resuming from step %d of %d", candidate, state.step, total_steps)

    started = time.monotonic()
    last_report = started
    window: list[float] = []
    model.train()
    try:
        while state.step < total_steps and not state.stopped_early:
            batches = _shard(task.epoch_batches(state.epoch), world, rank)
            while state.micro_batch < len(batches) and state.step < total_steps:
                if control.cancelled():
                    _save_checkpoint(checkpoint_dir, state, accelerator, model, optimizer, scheduler, best_weights)
                    raise TrainingCancelled(f"{candidate}: cancelled at step {state.step}; checkpoint kept")
                step_started = time.monotonic()
                step_loss = 0.0
                group = batches[state.micro_batch : state.micro_batch + ga]
                for index, batch in enumerate(group):
                    sync = index == len(group) - 1
                    with accelerator.no_sync(model) if not sync else contextlib.nullcontext():
                        with accelerator.autocast():
                            loss = task.loss(model, batch)
                        if not torch.isfinite(loss):
                            raise TrainingFailed(
                                f"{candidate}: the loss diverged ({loss.item()}) at step {state.step}; "
                                "lower training.learning_rate or check the data",
                                reason="diverged",
                            )
                        accelerator.backward(loss / len(group))
                    step_loss += loss.item() / len(group)
                    state.examples += task.examples_in(batch)
                accelerator.clip_grad_norm_(trainable, MAX_GRAD_NORM)
                optimizer.step()
                scheduler.step()
                rebalance()  # a training that started beside this one gets its share of the cores
                optimizer.zero_grad(set_to_none=True)
                state.micro_batch += len(group)
                state.step += 1
                state.train_seconds += time.monotonic() - step_started
                window.append(step_loss)
                state.loss_history.append((state.step, step_loss))

                if val_batches and (state.step % eval_every == 0 or state.step == total_steps):
                    best_weights = _validate(task, model, val_batches, accelerator, state, settings, best_weights)
                    model.train()
                if state.step % settings.checkpoint_every_steps == 0 and state.step < total_steps:
                    _save_checkpoint(checkpoint_dir, state, accelerator, model, optimizer, scheduler, best_weights)
                now = time.monotonic()
                if now - last_report >= control.report_every_s or state.step == total_steps or state.step == 1:
                    _report(control, candidate, state, total_steps, steps_per_epoch, window)
                    window, last_report = [], now
                if state.stopped_early:
                    break
            if state.micro_batch >= len(batches):
                state.epoch += 1
                state.micro_batch = 0
    except torch.OutOfMemoryError as exc:
        raise _oom(candidate, settings) from exc
    except RuntimeError as exc:
        if "out of memory" in str(exc).lower():
            raise _oom(candidate, settings) from exc
        raise

    if best_weights is not None:
        # Early stopping keeps the weights of the best validation, not the last step's.
        accelerator.unwrap_model(model).load_state_dict(best_weights, strict=False)
    model.eval()
    log.info("%s: trained %d steps in %.1f s (%s)", candidate, state.step, time.monotonic() - started,
             f"best val loss {state.best_val_loss:.4f} at step {state.best_step}" if state.best_val_loss is not None
             else "no validation split")
    final_train = float(np.mean([loss for _, loss in state.loss_history[-10:]])) if state.loss_history else None
    gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return LoopResult(
        steps=state.step,
        epochs=round(state.epoch + state.micro_batch / max(1, micro_per_epoch), 3),
        train_loss=final_train,
        val_loss=state.val_history[-1][1] if state.val_history else None,
        best_val_loss=state.best_val_loss,
        best_step=state.best_step,
        stopped_early=state.stopped_early,
        examples=state.examples * world,  # every rank trains on its own equal share
        processes=world,
        train_seconds=round(state.train_seconds, 3),
        examples_per_s=round(state.examples * world / state.train_seconds, 3) if state.train_seconds else 0.0,
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        peak_gpu_mb=round(gpu, 1) if gpu is not None else None,
        resumed_from_step=state.resumed_from_step,
        val_history=state.val_history,
    )


def clear_checkpoints(work_dir: Path) -> None:
    """Remove a finished run's checkpoints (the artifact holds what is kept)."""
    shutil.rmtree(work_dir / CHECKPOINT, ignore_errors=True)


def _shard(batches: Sequence[Batch], world: int, rank: int) -> Sequence[Batch]:
    """This process's batches; every process gets the same count so DDP steps stay in lockstep."""
    if world == 1:
        return batches
    usable = len(batches) // world * world
    return list(batches[rank:usable:world])


def _capped(task: StudentTask, batches: Sequence[Batch], limit: int | None) -> Sequence[Batch]:
    """The first batches holding `limit` examples: a fixed subset, so val losses compare across steps."""
    if limit is None:
        return batches
    kept, seen = [], 0
    for batch in batches:
        if seen >= limit:
            break
        kept.append(batch)
        seen += task.examples_in(batch)
    return kept


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    names = {name for name, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().clone().cpu() for k, v in model.state_dict().items() if k in names}


def _validate(
    task: StudentTask,
    model: torch.nn.Module,
    batches: Sequence[Batch],
    accelerator: Any,
    state: LoopState,
    settings: TrainingSettings,
    best_weights: dict[str, torch.Tensor] | None,
) -> dict[str, torch.Tensor] | None:
    model.eval()
    total = torch.zeros(2, device=accelerator.device, dtype=torch.float64)
    with torch.no_grad():
        for batch in batches:
            with accelerator.autocast():
                loss = task.loss(model, batch)
            n = task.examples_in(batch)
            total += torch.tensor([loss.item() * n, n], device=accelerator.device, dtype=torch.float64)
    total = accelerator.reduce(total, reduction="sum")
    val_loss = float(total[0] / max(total[1], 1))
    state.val_history.append((state.step, round(val_loss, 6)))
    if state.best_val_loss is None or val_loss < state.best_val_loss - 1e-6:
        state.best_val_loss, state.best_step, state.evals_without_gain = val_loss, state.step, 0
        return _trainable_state(accelerator.unwrap_model(model))
    state.evals_without_gain += 1
    if settings.early_stopping_patience and state.evals_without_gain >= settings.early_stopping_patience:
        log.info("early stopping at step %d: val loss has not improved for %d evaluations",
                 state.step, state.evals_without_gain)
        state.stopped_early = True
    return best_weights


def _report(
    control: TrainControl, candidate: str, state: LoopState, total: int, steps_per_epoch: int, window: list[float]
) -> None:
    done = state.step - (state.resumed_from_step or 0)
    rate = state.examples / state.train_seconds if state.train_seconds else 0.0
    per_step = state.train_seconds / done if done else None
    progress = TrainingProgress(
        candidate=candidate,
        step=state.step,
        max_steps=total,
        epoch=round(state.step / steps_per_epoch, 3),
        loss=round(float(np.mean(window)), 6) if window else None,
        val_loss=state.val_history[-1][1] if state.val_history else None,
        examples_per_s=round(rate, 3),
        elapsed_s=round(state.train_seconds, 3),
        eta_s=round(per_step * (total - state.step), 1) if per_step is not None else None,
    )
    log.info("%s: step %d/%d loss %s val %s %.1f ex/s eta %ss", candidate, progress.step, total, progress.loss,
             progress.val_loss, progress.examples_per_s, progress.eta_s)
    if control.on_progress is not None:
        control.on_progress(progress)


def _save_checkpoint(
    directory: Path,
    state: LoopState,
    accelerator: Any,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    best_weights: dict[str, torch.Tensor] | None,
) -> None:
    """Write the checkpoint beside the old one, then swap: a crash mid-write keeps the old one."""
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    torch.save(
        {
            "trainable": _trainable_state(accelerator.unwrap_model(model)),
            "best": best_weights,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
        },
        partial / "weights.pt",
    )
    (partial / "state.json").write_text(json.dumps(asdict(state)), encoding="utf-8")
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    partial.rename(directory)
    shutil.rmtree(old, ignore_errors=True)
    log.info("checkpoint at step %d -> %s", state.step, directory)


def _load_checkpoint(
    directory: Path, fingerprint: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
) -> tuple[LoopState, dict[str, torch.Tensor] | None] | None:
    try:
        raw = json.loads((directory / "state.json").read_text("utf-8"))
        if raw.get("fingerprint") != fingerprint:
            log.warning("ignoring checkpoint %s: it belongs to another run", directory)
            return None
        saved = torch.load(directory / "weights.pt", map_location="cpu", weights_only=False)
    except (OSError, ValueError, RuntimeError, EOFError) as exc:
        log.warning("ignoring unreadable checkpoint %s: %s", directory, exc)
        return None
    model.load_state_dict(saved["trainable"], strict=False)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["rng"]["torch"])
    np.random.set_state(saved["rng"]["numpy"])
    random.setstate(saved["rng"]["python"])
    raw["val_history"] = [tuple(x) for x in raw["val_history"]]
    raw["loss_history"] = [tuple(x) for x in raw["loss_history"]]
    return LoopState(**raw), saved["best"]


def _oom(candidate: str, settings: TrainingSettings) -> TrainingFailed:
    return TrainingFailed(
        f"{candidate}: out of memory with batch_size={settings.batch_size}, "
        f"max_seq_length={settings.max_seq_length}; lower them, raise gradient_accumulation_steps, "
        "or set training.gradient_checkpointing: true",
        reason="out_of_memory",
    )
