"""The one configuration: `config.yaml` validated by pydantic-settings, with env overrides.

Precedence, highest first: environment (`FLYWHEEL__SECTION__KEY=value`), the YAML file, the
defaults in the section modules. Nothing reads the environment or the file at import time: call
`load_settings()` once at start-up (CLI, API lifespan, worker init) and pass the result in.
Relative paths in the file are resolved against the file's own directory.

One module per group of sections (storage, api, gateway, deployment, models, teacher, training,
candidates, data, evaluation, policy, workloads, limits); `root.Settings` joins them; `loading` reads the
file. Import from here: every public name is re-exported.
"""

from services.domain.settings.api import ApiSettings, ApiToken, AuthSettings
from services.domain.settings.candidates import CandidateSettings, HardwareSettings, default_candidates
from services.domain.settings.data import DatasetSettings, DataSplitSettings, IclSettings
from services.domain.settings.deployment import DeploymentSettings
from services.domain.settings.evaluation import EvaluationSettings, JudgeSettings
from services.domain.settings.gateway import GatewayKey, GatewaySettings
from services.domain.settings.limits import UsageLimits
from services.domain.settings.loading import (
    CONFIG_ENV_VAR,
    DEFAULT_CONFIG_PATH,
    apply_overrides,
    config_path,
    format_validation_error,
    load_settings,
)
from services.domain.settings.models import ModelSpec, ModelsSettings, PackagedModel, default_models_dir
from services.domain.settings.policy import PricingSettings, PromotionOverrides, PromotionPolicy
from services.domain.settings.root import ENV_PREFIX, Settings
from services.domain.settings.storage import (
    ArtifactSettings,
    IngestSettings,
    JobStoreSettings,
    LogStoreSettings,
    QueueSettings,
    TrackingSettings,
)
from services.domain.settings.teacher import TeacherCalls, TeacherSettings
from services.domain.settings.training import (
    DistillationSettings,
    LoraOverrides,
    LoraSettings,
    TrainingOverrides,
    TrainingSettings,
)
from services.domain.settings.workloads import (
    DEFAULT_LABEL_PATTERN,
    DriftSettings,
    ScheduleSettings,
    WorkloadSettings,
    WorkloadType,
    parse_cron,
)

__all__ = [
    "CONFIG_ENV_VAR",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_LABEL_PATTERN",
    "ENV_PREFIX",
    "ApiSettings",
    "ApiToken",
    "ArtifactSettings",
    "AuthSettings",
    "CandidateSettings",
    "DataSplitSettings",
    "DatasetSettings",
    "DeploymentSettings",
    "DistillationSettings",
    "DriftSettings",
    "EvaluationSettings",
    "GatewayKey",
    "GatewaySettings",
    "HardwareSettings",
    "IclSettings",
    "IngestSettings",
    "JobStoreSettings",
    "JudgeSettings",
    "LogStoreSettings",
    "LoraOverrides",
    "LoraSettings",
    "ModelSpec",
    "ModelsSettings",
    "PackagedModel",
    "PricingSettings",
    "PromotionOverrides",
    "PromotionPolicy",
    "QueueSettings",
    "ScheduleSettings",
    "Settings",
    "TeacherCalls",
    "TeacherSettings",
    "TrackingSettings",
    "TrainingOverrides",
    "TrainingSettings",
    "UsageLimits",
    "WorkloadSettings",
    "WorkloadType",
    "apply_overrides",
    "config_path",
    "default_candidates",
    "default_models_dir",
    "format_validation_error",
    "load_settings",
    "parse_cron",
]
