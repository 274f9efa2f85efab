"""Service packages of the flywheel: datastore, customizer, evaluator, deployment, models.

Dependencies point one way: each service imports `services.domain` (and `services.models`
for model files), never another service, never `orchestrator`.
"""
