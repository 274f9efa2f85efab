"""The whole configuration: one field per section, cross-section checks, per-candidate/workload views."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from services.domain.errors import ConfigError
from services.domain.settings.api import ApiSettings
from services.domain.settings.candidates import CandidateSettings, HardwareSettings, default_candidates
from services.domain.settings.data import DatasetSettings, DataSplitSettings, IclSettings
from services.domain.settings.deployment import DeploymentSettings
from services.domain.settings.evaluation import EvaluationSettings
from services.domain.settings.gateway import GatewaySettings
from services.domain.settings.models import ModelsSettings
from services.domain.settings.policy import PricingSettings, PromotionPolicy
from services.domain.settings.storage import (
    ArtifactSettings,
    IngestSettings,
    JobStoreSettings,
    LogStoreSettings,
    QueueSettings,
    TrackingSettings,
)
from services.domain.settings.teacher import TeacherSettings
from services.domain.settings.training import DistillationSettings, LoraSettings, TrainingSettings
from services.domain.settings.workloads import WorkloadSettings
from services.domain.students import base_family

ENV_PREFIX = "FLYWHEEL__"


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
    candidates: list[CandidateSettings] = Field(default_factory=default_candidates)
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
            wanted = base_family(candidate.kind)
            if spec.kind != wanted:
                raise ValueError(
                    f"candidates[{i}] ({candidate.name}) has kind {candidate.kind!r}, which needs a "
                    f"{wanted} model, but {candidate.model!r} is a {spec.kind}"
                )
            self.training_for(candidate)  # overrides must make a valid section
            self.lora_for(candidate)
        if self.icl.example_selection == "semantic_similarity" and self.icl.embedding_model not in self.models.registry:
            raise ValueError(f"icl.embedding_model = {self.icl.embedding_model!r} is not in models.registry")
        if self.distillation.judge_relevance and not self.evaluation.judge.enabled:
            raise ValueError("distillation.judge_relevance grades with the LLM judge of evaluation.judge: enable it "
                             "(evaluation.judge.enabled, base_url, model) or set judge_relevance to false")
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
