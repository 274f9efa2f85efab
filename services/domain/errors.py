"""The error hierarchy. Lower layers raise these; only the API/CLI edge maps them to HTTP or exit codes."""

from __future__ import annotations


class FlywheelError(Exception):
    """Base class of every error the platform raises on purpose."""


class ConfigError(FlywheelError):
    """The configuration file or an override is invalid; the message names key, value and what is allowed."""


class InsufficientData(FlywheelError):
    """Not enough (valid) records to do what was asked."""


class TrainingFailed(FlywheelError):
    """A student could not be trained. `reason` is a stable code: out_of_memory, diverged, bad_data, ..."""

    def __init__(self, message: str, *, reason: str = "error") -> None:
        super().__init__(message)
        self.reason = reason


class TrainingCancelled(FlywheelError):
    """A training run stopped because its cancel flag was set; its last checkpoint is kept."""


class StoreError(FlywheelError):
    """A log, job or artifact store failed to read or write."""


class ModelUnavailable(FlywheelError):
    """A model named in the registry cannot be materialized (package missing, files corrupt, no network)."""


class ExternalServiceError(FlywheelError):
    """A call to a service outside this process failed.

    `retryable` tells callers (Celery retries, the gateway's fallback) whether trying again may help.
    """

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable
