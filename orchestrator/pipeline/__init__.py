"""A job as a Celery canvas built by task name, the orchestrator's own tasks, the embedded worker."""
