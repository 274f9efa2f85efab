"""The shared domain: typed records every part speaks, the settings schema, errors.

This package imports nothing from the other services or from the orchestrator.
"""
