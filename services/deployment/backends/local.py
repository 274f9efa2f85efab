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
from services.domain.labels import render_label
from services.domain.settings import Settings


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
            path = Path(key)
            if route.student_kind == "encoder_classifier":
                from services.models.runtime.classifier import ClassifierRunner

                runner: Any = ClassifierRunner(path / "model")
            elif route.student_kind == "causal_lm_lora":
                from services.models.cache import ModelCache
                from services.models.runtime.causal_lm import CausalLMRunner

                runner = CausalLMRunner(ModelCache(self.settings.models).path(str(route.base_model)),
                                        adapter_path=path / "adapter")
            else:
                from services.models.runtime.embedder import Embedder

                runner = Embedder(path)
            self._runners[key] = runner
            return runner

    def chat(self, route: Route, body: dict[str, Any]) -> dict[str, Any]:
        """An OpenAI chat completion from the student."""
        runner = self._runner(route)
        request = {"messages": body["messages"], "tools": body.get("tools")}
        if route.student_kind == "encoder_classifier":
            (text, confidence), = runner.answer([request])
            extra = {"confidence": round(confidence, 6)}
        elif route.student_kind == "causal_lm_lora" and route.labels and route.answer_template:
            from services.models.runtime.causal_lm import label_confidence

            # A label answer: score the labels (one forward pass over the prompt, then each label's tokens),
            # never free generation up to max_tokens.
            answers = [render_label(route.answer_template, label) for label in route.labels]
            best, scores = runner.score_labels(body["messages"], answers)
            text = answers[best]
            extra = {"decoding": "constrained", "confidence": round(label_confidence(scores, best), 6)}
        elif route.student_kind == "causal_lm_lora":
            text = runner.generate([request], max_new_tokens=int(body.get("max_tokens") or 64))[0]
            extra = {}
        else:
            raise ValueError(f"student {route.candidate} ({route.student_kind}) does not answer chat requests")
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
