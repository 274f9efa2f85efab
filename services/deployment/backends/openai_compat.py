"""The `openai` serving backend: students served by any OpenAI-compatible server (vLLM with
`--enable-lora --lora-modules NAME=PATH`, a NIM, another gateway). The request's `model` is the
student's served name (the candidate name, which is also the LoRA module name the Kubernetes
backend mounts); the answer's `model` names the student."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import SecretStr

from services.deployment.routes import Route
from services.domain.errors import ExternalServiceError
from services.domain.labels import render_label
from services.models.students.registry import kind_spec


class OpenAIBackend:
    def __init__(self, base_url: str | None, api_key: SecretStr | None = None, timeout_s: float = 30.0) -> None:
        if not base_url:
            from services.domain.errors import ConfigError

            raise ConfigError("deployment.base_url is required when deployment.backend is 'openai'")
        headers = {"Authorization": f"Bearer {api_key.get_secret_value()}"} if api_key is not None else {}
        self.client = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self.client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise ExternalServiceError(f"student server unreachable: {type(exc).__name__}: {exc}", retryable=True) from exc
        if response.status_code != 200:
            raise ExternalServiceError(f"student server answered {response.status_code}: {response.text[:300]}",
                                       retryable=response.status_code >= 500)
        return dict(response.json())

    def chat(self, route: Route, body: dict[str, Any]) -> dict[str, Any]:
        request = {k: v for k, v in body.items() if k not in ("metadata", "stream")} | {"model": route.candidate}
        if (route.labels and route.answer_template and route.student_kind is not None
                and kind_spec(route.student_kind).confidence == "label_scores"):
            # A label answer: vLLM's guided decoding picks one of the rendered labels (no free generation).
            request["guided_choice"] = [render_label(route.answer_template, label) for label in route.labels]
        answer = self._post("/chat/completions", request)
        answer["model"] = route.candidate
        return answer

    def embed(self, route: Route, inputs: list[str], dimensions: int | None) -> dict[str, Any]:
        request: dict[str, Any] = {"model": route.candidate, "input": inputs}
        if dimensions:
            request["dimensions"] = dimensions
        answer = self._post("/embeddings", request)
        answer["model"] = route.candidate
        return answer
