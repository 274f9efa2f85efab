"""What every kind's evaluator answerer shares: the run it answers, the answers it gives, per-request timing.

The evaluator (`services/evaluator/runner.py`) builds an `EvalRun` and calls the kind's answerer
(`StudentKindPackage.answer`); embedding workloads are answered by `embedding_outputs` whatever the kind.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.domain.artifacts import StudentArtifact
from services.domain.datasets import DatasetRef
from services.domain.errors import InsufficientData, ModelUnavailable
from services.domain.labels import LabelParser
from services.domain.prompts import StaticPrompt, strip_static
from services.domain.settings import CandidateSettings, Settings
from services.domain.students import StudentKind
from services.models.cache import ModelCache
from services.models.runtime.chat_format import content_text

# When the evaluation stage's budget runs out (monotonic seconds); set by the evaluator around a run.
DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("evaluation_deadline", default=None)
# (kind, cache, base model name, artifact directory or None) -> a loaded runtime: the registry's `load_runtime`.
Loader = Callable[[str, ModelCache, str, Path | None], Any]


@dataclass(frozen=True)
class EvalRun:
    """What an answerer needs to answer one evaluation's records."""

    settings: Settings
    dataset: DatasetRef
    spec: CandidateSettings
    artifact: StudentArtifact | None  # None: the untrained base model (base and ICL evaluations)
    records: list[dict[str, Any]]
    cache: ModelCache
    on_progress: Callable[[int, int], None] | None
    loader: Loader
    # Given the predictions so far (in record order), whether answering more records is futile (the evaluator's
    # futility rule: the student provably cannot qualify). Checked every `futility_every` records.
    futile: Callable[[list[Any]], bool] | None = None
    futility_every: int = 50

    @property
    def workload_type(self) -> str:
        return self.dataset.workload_type

    def parser(self) -> LabelParser:
        return LabelParser(self.settings.workload(str(self.dataset.manifest["workload_id"])).label_pattern,
                           self.dataset.labels() or None)

    def stop_when(self, predictions: Callable[[list[Any]], list[Any]]) -> Callable[[list[Any]], bool] | None:
        """`timed`'s stop check for this run: the futility rule over the predictions made of the outputs so far."""
        futile = self.futile
        if futile is None:
            return None
        return lambda outputs: futile(predictions(outputs))

    def runtime(self, kind: str) -> Any:
        """The runtime of `kind` over this run's model: the artifact's, or the untrained base model."""
        artifact_dir = Path(self.artifact.path) if self.artifact is not None else None
        return self.loader(kind, self.cache, self.spec.model, artifact_dir)


@dataclass
class Answers:
    """An answerer's outputs: a reference per record; predictions for the first records (all, unless the stage's
    budget ran out)."""

    references: Any
    predictions: Any
    seconds: list[float]
    confidences: list[float] | None = None  # one per prediction, for selective answering (classification)
    extra: dict[str, Any] = field(default_factory=dict)  # extra metrics
    decoding: str | None = None
    roles: list[str] | None = None  # embedding: query | passage per text (services.domain.embeddings.input_roles)
    texts: list[str] | None = None  # embedding: the input texts (graded by a relevance judge when configured)


def answer_of(record: dict[str, Any]) -> dict[str, Any]:
    """The teacher's answer message of a chat record."""
    return dict(record["response"]["choices"][0]["message"])


def reference(record: dict[str, Any], workload_type: str, parser: LabelParser) -> Any:
    """What a student's answer is scored against: the teacher's label, tool calls or text."""
    answer = answer_of(record)
    if workload_type == "classification":
        return parser.parse(content_text(answer.get("content")))
    if workload_type == "tool_calling":
        return answer.get("tool_calls") or content_text(answer.get("content"))
    return content_text(answer.get("content"))


def timed(items: list[Any], fn: Callable[[Any], Any], on_progress: Callable[[int, int], None] | None, *,
          stop: Callable[[list[Any]], bool] | None = None, every: int = 50) -> tuple[list[Any], list[float]]:
    """Answer each item one at a time (per-request latency); stop early when the stage's budget runs out, or
    when `stop` (given the outputs so far, every `every` items) says answering more is futile."""
    outputs: list[Any] = []
    seconds: list[float] = []
    deadline = DEADLINE.get()
    for index, item in enumerate(items):
        if deadline is not None and outputs and time.monotonic() > deadline:
            break
        started = time.perf_counter()
        outputs.append(fn(item))
        seconds.append(time.perf_counter() - started)
        if on_progress is not None and (index + 1) % 10 == 0:
            on_progress(index + 1, len(items))
        if stop is not None and (index + 1) % every == 0 and index + 1 < len(items) and stop(outputs):
            break
    return outputs, seconds


def pruned_messages(messages: list[dict[str, Any]], artifact: StudentArtifact | None) -> list[dict[str, Any]]:
    """A pruned student is evaluated as it is served: the static prompt replaced by its tag (requests that do
    not carry it, which the gateway would send to the teacher, are evaluated whole). Base and ICL evaluations
    (no artifact) keep the full prompt: they need it."""
    if artifact is None or artifact.prompt_tag is None or artifact.static_prompt is None:
        return messages
    stripped = strip_static(messages, StaticPrompt.model_validate(artifact.static_prompt), artifact.prompt_tag)
    return stripped if stripped is not None else messages


def embedding_outputs(run: EvalRun) -> Answers:
    """Student vectors against the teacher's, per input text (the model: the artifact's, or the untrained base)."""
    import numpy as np

    from services.domain.embeddings import decode_embedding, input_roles

    texts, teacher, roles = [], [], []
    query_max_words = run.settings.distillation.query_max_words
    for record in run.records:
        inputs = record["request"]["input"]
        inputs = [inputs] if isinstance(inputs, str) else inputs
        strings = [t for t in inputs if isinstance(t, str)]
        record_roles = iter(input_roles(record["request"], strings, query_max_words=query_max_words))
        for text, item in zip(inputs, record["response"]["data"], strict=False):
            if isinstance(text, str):
                texts.append(text)
                teacher.append(decode_embedding(item["embedding"]))
                roles.append(next(record_roles))
    if not texts:
        raise InsufficientData("the eval split holds no text inputs with teacher vectors")
    try:
        # Teacher vectors are the references whatever model answers: loaded as an embedder.
        embedder = run.runtime(StudentKind.EMBEDDING_DISTILL)
    except OSError as exc:
        where = run.artifact.path if run.artifact is not None else run.spec.model
        raise ModelUnavailable(f"cannot load embedding student from {where}: {exc}") from exc
    vectors, seconds = timed(texts, lambda text: embedder.encode([text])[0], run.on_progress)
    return Answers(np.asarray(teacher, dtype=np.float32), np.asarray(vectors, dtype=np.float32), seconds,
                   roles=roles, texts=texts)
