"""Shared training machinery every student trainer builds on: the request, the loop, batching, artifact writing."""
