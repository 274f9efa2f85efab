"""The OpenAI-compatible gateway: bind address, client keys and their limits, logging of teacher calls."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from services.domain.settings._section import _Section
from services.domain.settings.api import ApiToken
from services.domain.settings.limits import UsageLimits


class GatewayKey(ApiToken):
    """A client key of the gateway: an API token plus the usage limits of whoever holds it.

    A subclass rather than a field on `ApiToken`: the API's tokens keep refusing `limits` (they would be
    ignored there), while every existing gateway key, `scopes` included, stays valid."""

    limits: UsageLimits = Field(
        default_factory=UsageLimits, description="This key's limits, over every workload it calls (by key name).")


class GatewaySettings(_Section):
    host: str = Field("127.0.0.1", description="Bind address of `flywheel serve gateway`.")
    port: int = Field(8001, ge=1, le=65535)
    access_log: bool = Field(
        False, description="Log a line per request (uvicorn's access log). Off: it costs each request time, and "
                           "/metrics counts every request by workload, answerer and status.")
    aliases: dict[str, str] = Field(
        default_factory=dict, description="Model alias -> workload id; every workload id is also its own alias.")
    auth_enabled: bool = Field(False, description="Require a per-client API key (Authorization: Bearer).")
    keys: list[GatewayKey] = Field(
        default_factory=list, description="Client API keys (client_id names the client; name is unique and keys "
                                          "the usage-limit counts).")
    max_request_bytes: int = Field(4 * 2**20, ge=1024, description="Largest request body.")
    log_batch_size: int = Field(200, ge=1, le=10_000, description="Teacher calls sent to the datastore per batch.")
    log_flush_interval_s: float = Field(1.0, gt=0, le=60, description="Longest wait before a partial batch goes.")
    limits_flush_interval_s: float = Field(
        1.0, gt=0, le=60, description="How often each gateway process adds its usage-limit counts to the database "
                                      "and reads the others' (longer: less database load, more over-admission "
                                      "across replicas).")
    spool_path: Path = Field(Path("var/gateway-spool.jsonl"),
                             description="Where records wait while the queue is unreachable (flushed later).")

    @model_validator(mode="after")
    def _key_names_are_unique(self) -> GatewaySettings:
        names = [k.name for k in self.keys]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"the names in keys must be unique (usage limits are counted by name); repeated: "
                             f"{', '.join(dupes)}")
        return self
