"""The OpenAI-compatible gateway: bind address, client keys, logging of teacher calls."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.domain.settings._section import _Section
from services.domain.settings.api import ApiToken


class GatewaySettings(_Section):
    host: str = Field("127.0.0.1", description="Bind address of `flywheel serve gateway`.")
    port: int = Field(8001, ge=1, le=65535)
    aliases: dict[str, str] = Field(
        default_factory=dict, description="Model alias -> workload id; every workload id is also its own alias.")
    auth_enabled: bool = Field(False, description="Require a per-client API key (Authorization: Bearer).")
    keys: list[ApiToken] = Field(default_factory=list, description="Client API keys (client_id names the client).")
    max_request_bytes: int = Field(4 * 2**20, ge=1024, description="Largest request body.")
    log_batch_size: int = Field(200, ge=1, le=10_000, description="Teacher calls sent to the datastore per batch.")
    log_flush_interval_s: float = Field(1.0, gt=0, le=60, description="Longest wait before a partial batch goes.")
    spool_path: Path = Field(Path("var/gateway-spool.jsonl"),
                             description="Where records wait while the queue is unreachable (flushed later).")
