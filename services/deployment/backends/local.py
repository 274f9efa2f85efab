"""The `local` serving backend: students in this process (transformers + peft on CPU or one GPU).

An encoder-classifier student answers chat requests in the teacher's label format; a causal-LM
LoRA student generates (its adapter merged into the base once per artifact); an embedding
student serves /v1/embeddings (Matryoshka `dimensions` truncate). Loaded models are cached per
artifact directory.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.deployment.routes import Route
from services.domain.labels import render_label
from services.domain.settings import Settings
from services.domain.students import StudentKind


def _classifier_chat(runner: Any, route: Route, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (text, confidence), = runner.answer([{"messages": body["messages"], "tools": body.get("tools")}])
    return text, {"confidence": round(confidence, 6)}


def _causal_lm_chat(runner: Any, route: Route, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if route.labels and route.answer_template:
        from services.models.runtime.causal_lm import label_confidence

        # A label answer: score the labels (one forward pass over the prompt, then each label's tokens),
        # never free generation up to max_tokens.
        answers = [render_label(route.answer_template, label) for label in route.labels]
        best, scores = runner.score_labels(body["messages"], answers)
        return answers[best], {"decoding": "constrained", "confidence": round(label_confidence(scores, best), 6)}
    request = {"messages": body["messages"], "tools": body.get("tools")}
    return runner.generate([request], max_new_tokens=int(body.get("max_tokens") or 64))[0], {}


def _no_chat(runner: Any, route: Route, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    raise ValueError(f"student {route.candidate} ({route.student_kind}) does not answer chat requests")


# How each kind's loaded student answers a chat request: (answer text, the `flywheel` extras of the choice).
CHAT_ADAPTERS: dict[StudentKind, Callable[[Any, Route, dict[str, Any]], tuple[str, dict[str, Any]]]] = {
    StudentKind.CAUSAL_LM_LORA: _causal_lm_chat,
    StudentKind.ENCODER_CLASSIFIER: _classifier_chat,
    StudentKind.EMBEDDING_DISTILL: _no_chat,
}


class LocalBackend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        try:  # one thread per request: requests in parallel use the other cores (services/models/runtime/threads)
            import torch

            torch.set_num_threads(1)
        except ImportError:  # a gateway with remote backends only
            pass
        self._runners: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _runner(self, route: Route) -> Any:
        key = str(route.artifact_path)
        with self._lock:
            if key in self._runners:
                return self._runners[key]
            from services.models.cache import ModelCache
            from services.models.runtime.students import load_runtime

            runner = load_runtime(str(route.student_kind), ModelCache(self.settings.models),
                                  base_model=str(route.base_model), artifact_dir=Path(key))
            self._runners[key] = runner
            return runner

    def chat(self, route: Route, body: dict[str, Any]) -> dict[str, Any]:
        """An OpenAI chat completion from the student."""
        text, extra = CHAT_ADAPTERS[StudentKind(route.student_kind)](self._runner(route), route, body)
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
                "model": route.candidate,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
                             **({"flywheel": extra} if extra else {})}]}

    def embed(self, route: Route, inputs: list[str], dimensions: int | None) -> dict[str, Any]:
        runner = self._runner(route)
        vectors = runner.encode(inputs, dimensions=dimensions)
        return {"object": "list", "model": route.candidate,
                "data": [{"object": "embedding", "index": i, "embedding": [float(x) for x in v]}
                         for i, v in enumerate(vectors)]}
