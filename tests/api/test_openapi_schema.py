"""Every API operation says what it returns: its success response has a schema in /openapi.json that
describes fields (a model), not a free-form object. tests/api/test_openapi_fuzz.py then checks the
responses against those schemas."""

from __future__ import annotations

from typing import Any

from orchestrator.api.app import create_app
from services.domain.settings import Settings


def _resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _describes(schema: dict[str, Any] | None, spec: dict[str, Any]) -> bool:
    """A schema with named fields, a list of such, or plain text; not `{}` or a free-form object."""
    if not schema:
        return False
    schema = _resolve(schema, spec)
    if schema.get("type") == "array":
        return _describes(schema.get("items"), spec)
    return bool(schema.get("properties")) or schema.get("type") == "string"


def operations_without_response_schema(spec: dict[str, Any]) -> list[str]:
    missing = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            success = [code for code in operation["responses"] if code.startswith("2")]
            if not success:
                missing.append(f"{method.upper()} {path}: no success response")
            for code in success:
                if code == "204":  # no content: nothing to describe
                    continue
                content = operation["responses"][code].get("content") or {}
                if not content or not all(_describes(media.get("schema"), spec) for media in content.values()):
                    missing.append(f"{method.upper()} {path} {code}")
    return missing


def test_every_operation_has_a_response_schema_for_its_success_code() -> None:
    spec = create_app(Settings()).openapi()
    assert len(spec["paths"]) >= 12, sorted(spec["paths"])
    assert operations_without_response_schema(spec) == []
    job = _resolve(spec["paths"]["/api/jobs/{job_id}"]["get"]["responses"]["200"]["content"]["application/json"]
                   ["schema"], spec)
    assert {"id", "status", "stages", "candidates", "decision"} <= set(job["properties"])


def test_the_walk_catches_an_operation_that_returns_a_free_form_object() -> None:
    app = create_app(Settings())

    @app.get("/api/untyped")
    def untyped() -> dict[str, Any]:
        return {}

    @app.post("/api/loose", status_code=202)
    def loose() -> Any:
        return None

    assert operations_without_response_schema(app.openapi()) == ["GET /api/untyped 200", "POST /api/loose 202"]

