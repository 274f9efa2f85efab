"""Causal-LM LoRA SFT on a tiny random Llama: answer-only loss, resume, cancel, artifacts."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.customizer.service import plan_training, train_candidate
from services.domain.artifacts import StudentKind
from services.domain.errors import TrainingCancelled
from services.models.students.causal_lm_lora.trainer import tokenize_chat_example
from services.models.training.base import TrainControl
from services.models.training.batching import IGNORE_INDEX
from tests.model_plane import ModelPlane, model_plane


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> ModelPlane:
    return model_plane(tmp_path_factory.mktemp("plane"))


def test_loss_covers_the_answer_tokens_only(plane: ModelPlane) -> None:
    from transformers import AutoTokenizer

    request = plan_training(plane.settings, "tiny-lora", plane.dataset)
    tokenizer = AutoTokenizer.from_pretrained(str(request.base_model_path))
    line = next(plane.dataset.read_split("train"))
    example, truncated = tokenize_chat_example(tokenizer, line, max_length=256)  # type: ignore[misc]
    targets = [t for t, label in zip(example.input_ids, example.labels, strict=True) if label != IGNORE_INDEX]
    assert not truncated
    assert tokenizer.decode(targets).startswith(line["messages"][-1]["content"])
    assert example.labels[0] == IGNORE_INDEX


def test_long_prompts_lose_prompt_tokens_never_answer_tokens(plane: ModelPlane) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(plan_training(plane.settings, "tiny-lora", plane.dataset).base_model_path))
    line = {"messages": [{"role": "system", "content": "markets " * 200}, {"role": "user", "content": "fed"},
                         {"role": "assistant", "content": "[[[Macro]]]"}]}
    example, truncated = tokenize_chat_example(tokenizer, line, max_length=64)  # type: ignore[misc]
    assert truncated and len(example.input_ids) == 64
    answer = [t for t, label in zip(example.input_ids, example.labels, strict=True) if label != IGNORE_INDEX]
    assert "[[[Macro]]]" in tokenizer.decode(answer)


def test_train_writes_a_versioned_adapter_and_loss_falls(plane: ModelPlane) -> None:
    progress = []
    artifact = train_candidate(plane.settings, "tiny-lora", plane.dataset.dataset_id,
                               control=TrainControl(on_progress=progress.append, report_every_s=0))
    assert artifact.kind == StudentKind.CAUSAL_LM_LORA
    assert artifact.dataset_hashes["train"] == plane.dataset.splits["train"]["sha256"]
    assert (Path(artifact.path) / "adapter" / "adapter_config.json").exists()
    assert artifact.files and all(len(h) == 64 for h in artifact.files.values())
    metrics = artifact.metrics
    assert metrics["steps"] == progress[-1].step > 0
    assert metrics["val_history"], "validation ran"
    best_step, best_loss = min(metrics["val_history"], key=lambda point: point[1])
    assert (metrics["best_step"], metrics["best_val_loss"]) == (best_step, pytest.approx(best_loss, abs=1e-6))
    first, last = progress[0].loss, progress[-1].loss
    assert last < first, f"training loss did not fall: {first} -> {last}"
    assert artifact.hyperparameters["lora"]["rank"] == 4
    # Idempotent: the same request returns the finished artifact instead of training again.
    again = train_candidate(plane.settings, "tiny-lora", plane.dataset.dataset_id)
    assert again.artifact_id == artifact.artifact_id


def test_cancel_keeps_a_checkpoint_and_the_rerun_resumes(tmp_path: Path) -> None:
    plane = model_plane(tmp_path, epochs=3)
    steps_seen: list[int] = []
    control = TrainControl(on_progress=lambda p: steps_seen.append(p.step),
                           should_cancel=lambda: bool(steps_seen) and steps_seen[-1] >= 6, report_every_s=0)
    with pytest.raises(TrainingCancelled):
        train_candidate(plane.settings, "tiny-lora", plane.dataset.dataset_id, control=control)
    request = plan_training(plane.settings, "tiny-lora", plane.dataset)
    assert (request.work_dir / "checkpoint" / "state.json").exists()
    artifact = train_candidate(plane.settings, "tiny-lora", plane.dataset.dataset_id)
    assert artifact.metrics["resumed_from_step"] == 6
    assert artifact.metrics["steps"] > 6
    assert not (request.work_dir / "checkpoint").exists(), "checkpoints are removed once the artifact exists"


def test_resumed_run_matches_an_uninterrupted_one(tmp_path: Path) -> None:
    """Resume restores weights, optimizer, schedule and data position: same final loss."""
    straight = model_plane(tmp_path / "a", max_steps=12, early_stopping_patience=0)
    full = train_candidate(straight.settings, "tiny-lora", straight.dataset.dataset_id)
    resumed = model_plane(tmp_path / "b", max_steps=12, early_stopping_patience=0)
    seen: list[int] = []
    with pytest.raises(TrainingCancelled):
        train_candidate(resumed.settings, "tiny-lora", resumed.dataset.dataset_id,
                        control=TrainControl(on_progress=lambda p: seen.append(p.step), report_every_s=0,
                                             should_cancel=lambda: bool(seen) and seen[-1] >= 5))
    second = train_candidate(resumed.settings, "tiny-lora", resumed.dataset.dataset_id)
    assert second.metrics["resumed_from_step"] == 5
    assert second.metrics["val_history"][-1][1] == pytest.approx(full.metrics["val_history"][-1][1], rel=1e-4)


def test_answer_loss_equals_the_full_right_padded_loss(plane: ModelPlane) -> None:
    """Logits on answer positions only, left padding: the same loss as the plain full-logits way."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from services.models.students.causal_lm_lora.trainer import answer_loss
    from services.models.training.batching import collate

    request = plan_training(plane.settings, "tiny-lora", plane.dataset)
    tokenizer = AutoTokenizer.from_pretrained(str(request.base_model_path))
    model = AutoModelForCausalLM.from_pretrained(str(request.base_model_path)).eval()
    lines = list(plane.dataset.read_split("train"))[:6]
    lines[0]["messages"][-2]["content"] += " with a much longer headline than the others in this batch"
    examples = [tokenize_chat_example(tokenizer, line, max_length=256)[0] for line in lines]  # type: ignore[index]
    with torch.no_grad():
        ours = answer_loss(model, collate(examples, pad_id=0, left=True))
        right = collate(examples, pad_id=0)
        plain = model(input_ids=right["input_ids"], attention_mask=right["attention_mask"], labels=right["labels"]).loss
    assert float(ours) == pytest.approx(float(plain), rel=1e-4)
