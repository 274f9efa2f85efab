"""The orchestrator: the CLI, the jobs API and dashboard, the job pipeline, schedules and promotion decisions."""
