"""The dashboard: server-rendered pages at /dashboard over the job store, the routes and the gateway's
traffic (see docs/dashboard.md). `router` is included by the orchestrator's FastAPI app."""

from orchestrator.dashboard.routes import router

__all__ = ["router"]
