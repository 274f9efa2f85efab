"""Where state lives: the log store, ingestion, the queue, the job store, artifacts and MLflow tracking."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from services.domain.settings._section import _Section


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


class TrackingSettings(_Section):
    enabled: bool = True
    tracking_uri: str = Field("sqlite:///var/mlflow.sqlite", description="MLflow tracking URI.")
    experiment_prefix: str = Field("flywheel", min_length=1)
