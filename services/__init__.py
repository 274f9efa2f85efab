"""Service packages of the flywheel: datastore, customizer, evaluator, deployment, models.

Dependencies point one way: each service imports `services.domain` (and `services.models`
for model files), never another service, never `orchestrator`.
"""

import os

# OpenMP threads that spin while waiting steal the cores a second job or request needs; set before torch
# loads (services.models.runtime.threads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
