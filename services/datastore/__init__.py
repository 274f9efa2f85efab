"""Datastore service: log stores, ingestion with validation and quarantine, demo-data conversion."""
