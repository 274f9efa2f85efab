"""What a kind package gives the registry: its spec and the code that differs by kind.

Each kind package (`services/models/students/<kind>/__init__.py`) defines `KIND = StudentKindPackage(...)`.
It must import without torch: its loader, answerer and adapter import their runtime when called, and the
trainer is named as "module:Class" and imported when a student trains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from services.domain.students import KindSpec
from services.models.cache import ModelCache
from services.models.students.answering import Answers, EvalRun

# (cache, base model name, artifact directory or None for the untrained base model) -> a runtime.
RuntimeLoader = Callable[[ModelCache, str, Path | None], Any]
# How a kind's students answer a chat workload's eval records.
Answerer = Callable[[EvalRun], Answers]


class ChatRoute(Protocol):
    """What a serving adapter reads of a route (the deployment's `Route` has these fields)."""

    @property
    def candidate(self) -> str | None: ...
    @property
    def student_kind(self) -> str | None: ...
    @property
    def labels(self) -> list[str] | None: ...
    @property
    def answer_template(self) -> str | None: ...


# (loaded runtime, route, OpenAI chat body) -> (answer text, the `flywheel` extras of the choice).
ChatAdapter = Callable[[Any, ChatRoute, dict[str, Any]], tuple[str, dict[str, Any]]]


def no_chat(runner: Any, route: ChatRoute, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The adapter of a kind that serves no chat requests."""
    raise ValueError(f"student {route.candidate} ({route.student_kind}) does not answer chat requests")


@dataclass(frozen=True)
class StudentKindPackage:
    """One student kind: its spec and its code, as the registry finds them."""

    spec: KindSpec
    trainer: str  # "module:Class" of its `StudentTrainer` (imported when it trains: torch)
    load_runtime: RuntimeLoader  # how its students are loaded to answer (evaluator and local serving alike)
    answer: Answerer  # how it answers a chat workload's eval records
    chat: ChatAdapter  # how a loaded student answers a served chat request
