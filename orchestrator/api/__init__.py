"""The orchestrator's REST API (FastAPI): jobs, log ingestion, client data erasure, health and metrics."""
