"""Serving backends: where a promoted student runs (local today; OpenAI-compatible upstream and Kubernetes/vLLM next)."""
