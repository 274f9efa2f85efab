"""The `kmock` Kubernetes API emulator on a real port, for the official (sync) `kubernetes` client.

kmock is asyncio-based; it runs on its own event loop in a thread. It runs no controllers:
nothing becomes ready unless a test sets the status itself.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def kube_emulator() -> Iterator[Any]:
    """Yield a `kubernetes.client.ApiClient` talking to a fresh emulator."""
    import kmock
    from kubernetes import client

    found: dict[str, str] = {}
    stop = threading.Event()

    def run() -> None:
        async def main() -> None:
            async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
                found["url"] = str(server.url).rstrip("/")
                while not stop.is_set():
                    await asyncio.sleep(0.02)

        asyncio.run(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while "url" not in found:
        if time.monotonic() > deadline:
            raise RuntimeError("the kmock emulator did not start")
        time.sleep(0.02)
    api = client.ApiClient(client.Configuration(host=found["url"]))
    try:
        yield api
    finally:
        api.close()
        stop.set()
        thread.join(10)
