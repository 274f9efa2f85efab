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
from pathlib import Path
from typing import Any

from services.deployment.routes import Route
from services.domain.settings import Settings
from services.models.cache import ModelCache
from services.models.students.registry import chat_adapter_for, load_runtime


class LocalBackend:
    """Serves routes from students loaded in this process, each answering as its kind's adapter says."""

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
            runner = load_runtime(str(route.student_kind), ModelCache(self.settings.models),
                                  base_model=str(route.base_model), artifact_dir=Path(key))
            self._runners[key] = runner
            return runner

    def chat(self, route: Route, body: dict[str, Any]) -> dict[str, Any]:
        """An OpenAI chat completion from the student."""
        text, extra = chat_adapter_for(str(route.student_kind))(self._runner(route), route, body)
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
