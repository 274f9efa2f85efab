"""How students are trained: the optimizer loop, LoRA, embedding distillation, and per-candidate overrides."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, TypeAlias

from pydantic import Field, model_validator

from services.domain.settings._section import _Overrides, _partial, _Section


class LoraSettings(_Section):
    rank: int = Field(16, ge=1, le=512, description="LoRA rank r.")
    alpha: int = Field(32, ge=1, le=4096, description="LoRA alpha (scale = alpha / rank).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Module names to adapt, or all-linear."
    )


class TrainingSettings(_Section):
    epochs: int = Field(2, ge=1, le=100)
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps.")
    batch_size: int = Field(8, ge=1, le=1024)
    gradient_accumulation_steps: int = Field(1, ge=1, le=1024)
    learning_rate: float = Field(2e-4, gt=0, le=1)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0, le=1)
    max_seq_length: int | None = Field(
        None, ge=16, le=131_072, description="Tokens per training example; null: sized from the data (every "
        "example whole, up to the model's limit: 4,096 for causal LMs, 512 for encoders). Examples cut at a set "
        "length are counted (`truncated_examples`) and reported on the job.")
    early_stopping_patience: int = Field(2, ge=0, description="Evaluations without val-loss gain; 0=off.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16/fp16 on GPU, fp32 on CPU."
    )
    gradient_checkpointing: bool = False
    seed: int = Field(42, ge=0)
    finetune: Literal["lora", "full", "head", "head_full"] = Field(
        "lora", description="lora: train adapters only; full: every weight (encoder students only); head: a "
                            "frozen encoder with a logistic-regression head, cross-fitted (encoder classifiers); "
                            "head_full: that head first, then every weight fine-tuned from it, the best step kept "
                            "on the val split (encoder classifiers; a GPU recipe: docs/selective.md).")
    lexical_mix: float = Field(
        0.5, ge=0, lt=1, description="finetune: head / head_full: weight of a TF-IDF + logistic-regression head "
                                     "averaged with the encoder head's probabilities (0: the encoder head alone).")
    prompt_examples: bool = Field(
        True, description="finetune: head / head_full: the class definitions and quoted examples of the workload's "
                          "static system prompt (the teacher's prompt is labelled data) join the training examples.")
    batching: Literal["length_grouped", "padded"] = Field(
        "length_grouped", description="length_grouped: batch examples of similar length (less padding)."
    )
    eval_every_steps: int | None = Field(
        None, ge=1, description="Validation-loss interval in steps (default: ~5 per run, at least once an epoch)."
    )
    checkpoint_every_steps: int = Field(50, ge=1, description="Save a resumable checkpoint every N steps.")
    max_val_examples: int | None = Field(
        512, ge=1, description="Validation examples used for the val loss / early stopping (None: all)."
    )


if TYPE_CHECKING:  # fields made at run time; to the type checker, a partial section of any of them
    TrainingOverrides: TypeAlias = _Overrides
    LoraOverrides: TypeAlias = _Overrides
else:
    TrainingOverrides = _partial(TrainingSettings, "TrainingOverrides")
    LoraOverrides = _partial(LoraSettings, "LoraOverrides")


class DistillationSettings(_Section):
    """Embedding distillation losses and Matryoshka dimensions."""

    matryoshka_dims: list[int] = Field(
        default_factory=lambda: [64, 128, 256], description="Truncated sizes trained to stay useful (plus full)."
    )
    mse_weight: float = Field(1.0, ge=0, description="MSE between student (projected) and teacher vectors.")
    cosine_weight: float = Field(1.0, ge=0, description="1 - cosine(student, teacher).")
    similarity_weight: float = Field(1.0, ge=0, description="MSE between in-batch similarity matrices.")
    contrastive_weight: float = Field(0.0, ge=0, description="In-batch contrastive loss on query/positive pairs.")
    temperature: float = Field(0.05, gt=0, le=1, description="Contrastive softmax temperature.")
    listwise_weight: float = Field(
        1.0, ge=0, description="KL from the teacher's to the student's softmax over each logged query's candidate "
        "passages (ranking distillation; needs queries and passages in the logs, see docs/model-plane.md).")
    listwise_temperature: float = Field(0.05, gt=0, le=1, description="Temperature of both listwise softmaxes.")
    listwise_candidates: int = Field(
        8, ge=2, description="Candidates per query: the teacher's top passages, then the student's hard negatives.")
    hard_negatives: int = Field(
        4, ge=0, description="Of the candidates, how many are passages the current student ranks highest "
        "that the teacher does not (re-mined every round).")
    mining_rounds: int = Field(
        2, ge=1, description="Rounds of (mine hard negatives with the current student, train); steps are split "
        "evenly between rounds.")
    query_max_words: int = Field(
        32, ge=1, description="Inputs logged without input_type: a single text of at most this many words is a query.")
    judge_relevance: bool = Field(
        False, description="Grade each round's query-candidate pairs 0-3 with the LLM judge of evaluation.judge "
        "(which must be enabled) and train toward the grades beside the teacher's ranking (listwise rounds only).")
    judge_weight: float = Field(1.0, ge=0, description="Weight of the judged-relevance term (judge_relevance).")
    soup: bool = Field(
        True, description="With ranking rounds: also train the vector-loss recipe from the same start (same steps, "
        "soup_batch_size texts a batch) and serve the average of the two students' weights (a model soup; "
        "docs/model-plane.md). About 1.3x the training time, none at serving.")
    soup_batch_size: int = Field(32, ge=2, description="Texts a batch of the soup's vector-loss ingredient.")

    @model_validator(mode="after")
    def _dims(self) -> DistillationSettings:
        if any(d < 8 for d in self.matryoshka_dims):
            raise ValueError(f"distillation.matryoshka_dims {self.matryoshka_dims}: every size must be >= 8")
        if self.hard_negatives >= self.listwise_candidates:
            raise ValueError("distillation.hard_negatives must be below listwise_candidates (the teacher's top "
                             "passages fill the rest)")
        if not (self.mse_weight or self.cosine_weight or self.similarity_weight or self.contrastive_weight
                or self.listwise_weight):
            raise ValueError("distillation: at least one loss weight must be above 0")
        return self
