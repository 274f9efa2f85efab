"""Serving backends: where a promoted student runs (in process, an OpenAI-compatible server, or vLLM on Kubernetes)."""
