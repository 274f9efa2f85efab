"""Typed log records: one teacher call each, in the OpenAI wire formats.

A chat or tool-calling call logs an OpenAI chat-completions request and response; an embedding
call logs an embeddings request and response. Unknown OpenAI fields (temperature, usage, ...)
are kept, never dropped: every model allows extra keys, and the record id covers them.

Validation is strict (no "123" -> 123 coercion). Every validation failure maps to one reason
code from `QUARANTINE_REASONS` so ingestion can quarantine it with a stable, countable reason.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

# Unix seconds past this are almost certainly milliseconds (year 2100).
MAX_TIMESTAMP_S = 4_102_444_800


class CallType(StrEnum):
    """What kind of teacher call a record holds (shape only; the workload type is decided later)."""

    CHAT = "chat"
    TOOL_CALLING = "tool_calling"
    EMBEDDING = "embedding"


class _OpenAIModel(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)


class FunctionCall(_OpenAIModel):
    name: str
    arguments: str = Field(description="JSON-encoded arguments, as the OpenAI API sends them.")

    @field_validator("arguments")
    @classmethod
    def _arguments_are_json(cls, value: str) -> str:
        try:
            json.loads(value)
        except ValueError as exc:
            raise PydanticCustomError(
                "invalid_tool_arguments",
                "tool call arguments are not valid JSON ({error})",
                {"error": str(exc)},
            ) from None
        return value


class ToolCall(_OpenAIModel):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class FunctionDefinition(_OpenAIModel):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(_OpenAIModel):
    type: Literal["function"] = "function"
    function: FunctionDefinition


Content = str | list[dict[str, Any]] | None


class Message(_OpenAIModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Content = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @property
    def text(self) -> str:
        """The message's text; multi-part content is joined from its text parts."""
        return content_text(self.content)


class AssistantMessage(_OpenAIModel):
    role: Literal["assistant"] = "assistant"
    content: Content = None
    tool_calls: list[ToolCall] | None = None

    @property
    def text(self) -> str:
        return content_text(self.content)


class Choice(_OpenAIModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str | None = None


class ChatRequest(_OpenAIModel):
    model: str
    messages: list[Message] = Field(min_length=1)
    tools: list[Tool] | None = None


class ChatResponse(_OpenAIModel):
    choices: list[Choice] = Field(min_length=1)
    usage: dict[str, Any] | None = None


class EmbeddingRequest(_OpenAIModel):
    model: str
    input: str | list[str] | list[int] | list[list[int]]

    @property
    def texts(self) -> list[str]:
        """Input texts (token-id inputs have no text and give an empty list)."""
        if isinstance(self.input, str):
            return [self.input]
        return [item for item in self.input if isinstance(item, str)]


class EmbeddingData(_OpenAIModel):
    index: int = 0
    embedding: list[float] | str = Field(description="Floats, or base64 when encoding_format=base64.")


class EmbeddingResponse(_OpenAIModel):
    data: list[EmbeddingData] = Field(min_length=1)
    usage: dict[str, Any] | None = None


def _request_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        if "messages" in value:
            return "chat"
        if "input" in value:
            return "embedding"
        return None
    if isinstance(value, ChatRequest):
        return "chat"
    if isinstance(value, EmbeddingRequest):
        return "embedding"
    return None


def _response_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        if "choices" in value:
            return "chat"
        if "data" in value:
            return "embedding"
        return None
    if isinstance(value, ChatResponse):
        return "chat"
    if isinstance(value, EmbeddingResponse):
        return "embedding"
    return None


AnyRequest = Annotated[
    Annotated[ChatRequest, Tag("chat")] | Annotated[EmbeddingRequest, Tag("embedding")],
    Discriminator(
        _request_kind,
        custom_error_type="unknown_call_type",
        custom_error_message="request has neither `messages` (chat) nor `input` (embeddings)",
    ),
]
AnyResponse = Annotated[
    Annotated[ChatResponse, Tag("chat")] | Annotated[EmbeddingResponse, Tag("embedding")],
    Discriminator(
        _response_kind,
        custom_error_type="unknown_call_type",
        custom_error_message="response has neither `choices` (chat) nor `data` (embeddings)",
    ),
]


class ResponsesRequest(_OpenAIModel):
    """A Responses API request body as the teacher was sent it (every field kept)."""

    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None


class ResponsesResponse(_OpenAIModel):
    """The teacher's Responses API response object (every field kept)."""

    output: list[dict[str, Any]]


class ResponsesCall(_OpenAIModel):
    """A call made through OpenAI's Responses API (`POST /v1/responses`), as it was made; the record's
    `request` and `response` hold its chat view (services/domain/responses_api.py)."""

    request: ResponsesRequest
    response: ResponsesResponse


class LogRecord(_OpenAIModel):
    """One logged teacher call."""

    workload_id: str = Field(min_length=1, max_length=200, description="Which task this call serves.")
    client_id: str = Field(min_length=1, max_length=200, description="Which client/team made the call.")
    timestamp: int | float = Field(ge=0, description="Unix seconds (UTC) of the call.")
    request: AnyRequest
    response: AnyResponse
    responses_api: ResponsesCall | None = Field(
        None, description="A Responses API call as made (body and response object); `request`/`response` are "
                          "its chat view. Absent for chat and embeddings calls, so their ids are unchanged.")

    @field_validator("timestamp")
    @classmethod
    def _seconds_not_millis(cls, value: int | float) -> int | float:
        if value > MAX_TIMESTAMP_S:
            raise PydanticCustomError(
                "invalid_value",
                "timestamp {value} is past the year 2100: timestamps are Unix seconds, not milliseconds",
                {"value": value},
            )
        return value

    @model_validator(mode="after")
    def _response_matches_request(self) -> LogRecord:
        if isinstance(self.request, ChatRequest) != isinstance(self.response, ChatResponse):
            raise PydanticCustomError(
                "mismatched_response",
                "a {req} request was logged with a {resp} response",
                {
                    "req": "chat" if isinstance(self.request, ChatRequest) else "embeddings",
                    "resp": "chat" if isinstance(self.response, ChatResponse) else "embeddings",
                },
            )
        if self.responses_api is not None and not isinstance(self.request, ChatRequest):
            raise PydanticCustomError(
                "mismatched_response",
                "a Responses API call was logged with an embeddings request as its chat view",
                {},
            )
        if isinstance(self.request, EmbeddingRequest) and isinstance(
            self.response, EmbeddingResponse
        ):
            expected = 1 if isinstance(self.request.input, str) else None
            if isinstance(self.request.input, list) and self.request.input:
                # A flat list of ints is one tokenized input; anything else is one input per item.
                flat_tokens = all(isinstance(x, int) for x in self.request.input)
                expected = 1 if flat_tokens else len(self.request.input)
            if expected is not None and expected != len(self.response.data):
                raise PydanticCustomError(
                    "embedding_count_mismatch",
                    "{inputs} inputs but {vectors} embeddings in the response",
                    {"inputs": expected, "vectors": len(self.response.data)},
                )
        return self

    @classmethod
    def from_json_object(cls, value: dict[str, Any]) -> LogRecord:
        """Validate a freshly decoded JSON object, taking the canonical JSON from the object itself.

        The hot path of ingestion: serializing the input dict is about twice as fast as
        `model_dump` + serializing. It gives the same text, so the same id, because validation
        is strict (no coercion) and unknown keys are kept: the dump of a chat record is its
        input. Two cases where the dump differs keep the dump path: embedding vectors (a strict
        `float` still turns 0 into 0.0) and non-finite floats (`1e400` decodes to inf, which
        the dump writes as null). `tests/unit/test_records_canonical.py` checks the equality
        on generated records. The caller must not change `value` afterwards.
        """
        record = cls.model_validate(value)
        if isinstance(record.response, ChatResponse):
            try:
                text = canonical_json(value)
            except (ValueError, RecursionError):
                return record
            record.__dict__["_canonical"] = text  # what the cached property would compute
        return record

    @classmethod
    def from_canonical_json(cls, text: str) -> LogRecord:
        """Load a record from its canonical JSON (a log store's body), reusing the text as is.

        Canonical JSON re-validated and dumped gives itself back, so a record read from a store
        gets its id without serializing again.
        """
        record = cls.model_validate_json(text)
        record.__dict__["_canonical"] = text
        return record

    @cached_property
    def id(self) -> str:
        """sha256 of the record's canonical JSON (timestamp included)."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()

    def canonical_json(self) -> str:
        """Sorted keys, no whitespace, UTF-8: the same record always gives the same string."""
        return self._canonical

    @cached_property
    def _canonical(self) -> str:
        # Records are frozen, so the id and the stored body share one serialization.
        return canonical_json(self.model_dump(mode="json", exclude_unset=True, by_alias=True))

    @property
    def answer(self) -> AssistantMessage | None:
        """The teacher's answer: the first choice's message (None for an embedding call)."""
        return self.response.choices[0].message if isinstance(self.response, ChatResponse) else None

    @property
    def answer_text(self) -> str:
        """The text of the teacher's answer ("" for an embedding call)."""
        answer = self.answer
        return answer.text if answer is not None else ""

    @property
    def call_type(self) -> CallType:
        if isinstance(self.request, EmbeddingRequest):
            return CallType.EMBEDDING
        if self.request.tools or any(c.message.tool_calls for c in self.response.choices):  # type: ignore[union-attr]  # a chat request comes with a ChatResponse (validated)
            return CallType.TOOL_CALLING
        return CallType.CHAT


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def content_text(content: Content) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(str(part.get("text", "")) for part in content if part.get("type") == "text")


class QuarantineReason(StrEnum):
    """Why a log line was quarantined. A fixed set: dashboards and alerts count by these codes."""

    NOT_UTF8 = "not_utf8"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    RECORD_TOO_LARGE = "record_too_large"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    INVALID_VALUE = "invalid_value"
    EMPTY_MESSAGES = "empty_messages"
    EMPTY_CHOICES = "empty_choices"
    EMPTY_EMBEDDINGS = "empty_embeddings"
    MISSING_CHOICE_MESSAGE = "missing_choice_message"
    INVALID_TOOL_ARGUMENTS = "invalid_tool_arguments"
    UNKNOWN_CALL_TYPE = "unknown_call_type"
    MISMATCHED_RESPONSE = "mismatched_response"
    EMBEDDING_COUNT_MISMATCH = "embedding_count_mismatch"


QUARANTINE_REASONS: frozenset[str] = frozenset(r.value for r in QuarantineReason)

_CUSTOM_CODES = {
    "invalid_tool_arguments",
    "unknown_call_type",
    "mismatched_response",
    "embedding_count_mismatch",
    "invalid_value",
}


def reason_for(error: ValidationError) -> tuple[QuarantineReason, str]:
    """Map a validation error to (reason code, human detail naming the field)."""
    details = error.errors(include_url=False)
    first = details[0]
    messages = list(dict.fromkeys(f"{_loc(e['loc'])}: {e['msg']}" for e in details))
    detail = "; ".join(messages[:5]) + (f" (+{len(messages) - 5} more)" if len(messages) > 5 else "")
    return _reason_code(first["type"], first["loc"], first.get("input")), detail


_UNION_TAGS = {"chat", "embedding", "int", "float", "str", "bool", "none"}


def _loc(loc: Iterable[Any]) -> str:
    # Drop pydantic's union-branch markers ("int", "list[str]", ...) so the path names fields only.
    parts = [str(p) for p in loc if str(p) not in _UNION_TAGS and "[" not in str(p)]
    return ".".join(parts) or "<record>"


def _reason_code(error_type: str, loc: tuple[Any, ...], value: Any) -> QuarantineReason:
    last = loc[-1] if loc else None
    if error_type in _CUSTOM_CODES:
        return QuarantineReason(error_type)
    if last == "message" and "choices" in loc and (error_type == "missing" or value is None):
        return QuarantineReason.MISSING_CHOICE_MESSAGE
    if error_type == "missing":
        return QuarantineReason.MISSING_FIELD
    if error_type == "too_short":
        return {
            "messages": QuarantineReason.EMPTY_MESSAGES,
            "choices": QuarantineReason.EMPTY_CHOICES,
            "data": QuarantineReason.EMPTY_EMBEDDINGS,
        }.get(str(last), QuarantineReason.INVALID_VALUE)
    if error_type.endswith("_type") or error_type in {"model_attributes_type", "union_tag_invalid"}:
        return QuarantineReason.WRONG_TYPE
    return QuarantineReason.INVALID_VALUE
