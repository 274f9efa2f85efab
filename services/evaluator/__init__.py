"""Evaluator service: base / ICL / customized evaluations against the teacher (issue #5)."""
