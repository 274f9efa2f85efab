"""The orchestrator: the CLI today; the jobs API, schedules and promotion decisions (issue #6)."""
