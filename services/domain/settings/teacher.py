"""The teacher: the expensive OpenAI-compatible model whose answers the students learn, and how the
gateway calls it (timeouts, retries; per workload in `workloads.W.teacher_calls`)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from services.domain.settings._section import _Section


class TeacherCalls(_Section):
    """How the gateway calls the teacher. In `teacher`, the defaults; in `workloads.W.teacher_calls`, a
    workload's own values (null: the teacher's)."""

    timeout_s: float | None = Field(
        None, gt=0, le=600, description="Total time for one client request, retries and backoff included; for a "
                                        "stream, until the teacher's first byte, then at most this long between two chunks.")
    connect_timeout_s: float | None = Field(None, gt=0, le=600, description="Time to open a connection to the teacher.")
    max_attempts: int | None = Field(
        None, ge=1, le=10, description="Calls per request: 429, 5xx (not 501) and connection errors are tried again, "
                                       "streams only before their first byte. 1: no retry.")


class TeacherSettings(_Section):
    model: str = Field("meta/llama-3.3-70b-instruct", description="The teacher's model name.")
    embedding_model: str | None = Field(None, description="The teacher's embedding model (null: `model`).")
    base_url: str | None = Field(None, description="OpenAI-compatible base URL of the teacher.")
    api_key: SecretStr | None = None
    timeout_s: float = Field(60.0, gt=0, le=600, description=TeacherCalls.model_fields["timeout_s"].description)
    connect_timeout_s: float = Field(5.0, gt=0, le=600,
                                     description=TeacherCalls.model_fields["connect_timeout_s"].description)
    max_attempts: int = Field(3, ge=1, le=10, description=TeacherCalls.model_fields["max_attempts"].description)
    retry_backoff_s: float = Field(
        0.25, ge=0, le=60, description="Wait before the second attempt; doubled for each later one, with full jitter "
                                       "(a random wait between 0 and that).")
    retry_backoff_max_s: float = Field(4.0, ge=0, le=600, description="The longest wait between two attempts.")
    retry_after_max_s: float = Field(
        10.0, ge=0, le=600, description="A 429/503 whose Retry-After asks for longer than this (or past the request's "
                                        "timeout) is not retried: the client gets it (or the student answers).")
