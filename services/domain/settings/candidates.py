"""The students a job tries, and whether the workers have a GPU for the ones that need it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from services.domain.settings._section import _Section
from services.domain.settings.training import LoraOverrides, TrainingOverrides
from services.domain.students import registered_kind


class CandidateSettings(_Section):
    name: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9_.-]*$", description="Candidate id.")
    model: str = Field(description="A key of models.registry.")
    kind: Annotated[str, AfterValidator(registered_kind)] = Field(
        description="How the student is built from the model: a registered student kind (causal_lm_lora, "
                    "encoder_classifier, embedding_distill built in; services/domain/students.py).")
    enabled: bool = True
    run_on: Literal["any", "gpu"] = Field(
        "any", description="gpu: left out of jobs (with the reason in the decision) where no GPU is present "
                           "(`hardware.gpu`); a causal LM trained and evaluated on CPU holds a job for long.")
    customize: bool = Field(True, description="Train it (else base/ICL evaluation only).")
    training: TrainingOverrides = Field(default_factory=TrainingOverrides)
    lora: LoraOverrides = Field(default_factory=LoraOverrides)
    teacher_model: str | None = Field(
        None, description="embedding_distill: registry model that embeds texts whose logs lack teacher vectors."
    )
    prune_static_prompt: Literal["auto", "on", "off"] = Field(
        "auto", description="causal_lm_lora: train, evaluate and serve without the workload's static prompt "
                            "(replaced by a short task tag). auto: when it is at least prune_min_ratio times "
                            "the variable part. Encoder classifiers always read the last user turn only.")
    prune_min_ratio: float = Field(2.0, gt=0, description="auto pruning: static tokens per variable token.")


def default_candidates() -> list[CandidateSettings]:
    """The students a job tries when config.yaml names none: two encoder classifiers and a GPU-only LoRA."""
    return [
        CandidateSettings(
            name="minilm-classifier",
            model="minilm-l6",
            kind="encoder_classifier",
            training=TrainingOverrides(finetune="head_full", learning_rate=1e-4, epochs=5, batch_size=16,
                                       max_steps=450),
        ),
        CandidateSettings(
            name="mpnet-classifier",
            model="mpnet-base",
            kind="encoder_classifier",
            training=TrainingOverrides(finetune="head"),
        ),
        CandidateSettings(
            name="smollm2-lora",
            model="smollm2-135m-instruct",
            kind="causal_lm_lora",
            run_on="gpu",
            training=TrainingOverrides(max_steps=50),
        ),
    ]


class HardwareSettings(_Section):
    gpu: Literal["auto", "yes", "no"] = Field(
        "auto", description="Whether the customizer and evaluator workers have a GPU. auto: this machine has an "
                            "NVIDIA device (checked without importing torch). Set `yes` where only the workers do.")

    def has_gpu(self) -> bool:
        if self.gpu != "auto":
            return self.gpu == "yes"
        import shutil

        return Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None
