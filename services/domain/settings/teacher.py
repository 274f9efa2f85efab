"""The teacher: the expensive OpenAI-compatible model whose answers the students learn."""

from __future__ import annotations

from pydantic import Field, SecretStr

from services.domain.settings._section import _Section


class TeacherSettings(_Section):
    model: str = Field("meta/llama-3.3-70b-instruct", description="The teacher's model name.")
    embedding_model: str | None = Field(None, description="The teacher's embedding model (null: `model`).")
    base_url: str | None = Field(None, description="OpenAI-compatible base URL of the teacher.")
    api_key: SecretStr | None = None
    timeout_s: float = Field(60.0, gt=0, le=600)
