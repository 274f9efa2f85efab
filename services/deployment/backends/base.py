"""The serving-backend contract: every backend answers a route's chat and embedding requests in
the OpenAI formats, names the student in `model`, and raises on failure (the gateway then lets the
teacher answer). The shared suite is tests/contract/test_serving_backends.py."""

from __future__ import annotations

from typing import Any, Protocol

from services.deployment.routes import Route


class ServingBackend(Protocol):
    def chat(self, route: Route, body: dict[str, Any]) -> dict[str, Any]:
        """An OpenAI chat completion from the route's student."""
        ...

    def embed(self, route: Route, inputs: list[str], dimensions: int | None) -> dict[str, Any]:
        """An OpenAI embeddings response from the route's student."""
        ...


def backend_for(settings: Any) -> ServingBackend:
    """The configured backend (`deployment.backend`)."""
    if settings.deployment.backend == "openai":
        from services.deployment.backends.openai_compat import OpenAIBackend

        return OpenAIBackend(settings.deployment.base_url, settings.deployment.api_key, settings.deployment.timeout_s)
    if settings.deployment.backend == "kubernetes":
        from services.deployment.backends.kubernetes import KubernetesBackend, spec_from

        return KubernetesBackend(spec_from(settings), timeout_s=settings.deployment.timeout_s)
    from services.deployment.backends.local import LocalBackend

    return LocalBackend(settings)
