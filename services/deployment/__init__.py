"""Deployment service: serving backends, the OpenAI-compatible gateway, rollout (issue #7)."""
