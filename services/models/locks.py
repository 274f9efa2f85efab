"""One process-wide lock around model loading.

transformers 5 builds a model on the meta device and patches module construction globally while
`from_pretrained` runs, which is not thread-safe: two threads loading at once (the embedded
worker's thread pool running a training and an evaluation) fail with "Cannot copy out of meta
tensor". Loading is a short part of any task, so loads take turns; the work after loading runs
in parallel.
"""

from __future__ import annotations

import threading

MODEL_LOAD_LOCK = threading.RLock()
