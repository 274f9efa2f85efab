"""Container health checks of the flywheel images (Dockerfile HEALTHCHECK, compose healthcheck).

    healthcheck.py api        GET /api/health on api.port of $FLYWHEEL_CONFIG
    healthcheck.py gateway    GET /health on gateway.port
    healthcheck.py worker     Celery control ping of this container's worker (celery@<hostname>)
    healthcheck.py http URL   GET URL (e.g. the MLflow server's /health)

Exit 0 when healthy, 1 otherwise, with one line on stdout (`docker inspect` shows it). Ports come
from the same config file the process reads, so a changed port needs no change here.
"""

from __future__ import annotations

import socket
import sys
import urllib.error
import urllib.request

TIMEOUT_S = 5.0


def check_http(url: str) -> tuple[bool, str]:
    """Healthy when `url` answers 2xx within the timeout."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:  # noqa: S310 - a local URL we build
            return 200 <= response.status < 300, f"{url}: HTTP {response.status}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"{url}: {exc}"


def check_worker() -> tuple[bool, str]:
    """Healthy when this container's Celery worker answers a control ping."""
    from services.domain.queue import make_celery_app
    from services.domain.settings import load_settings

    settings = load_settings(required=True)
    if settings.queue.backend != "redis":
        # kombu's SQL transport has no broadcast, so no remote ping: liveness is the process itself.
        return True, f"{settings.queue.backend} broker: no control ping; the process being up is the check"
    node = f"celery@{socket.gethostname()}"
    app = make_celery_app(settings.queue, name="flywheel-healthcheck")
    try:
        replies = app.control.ping(destination=[node], timeout=TIMEOUT_S)
    finally:
        app.close()
    ok = any(node in reply for reply in replies or [])
    return ok, f"{node}: {'pong' if ok else 'no reply'}"


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"api", "gateway", "worker", "http"}:
        print("usage: healthcheck.py api|gateway|worker|http URL")
        return 2
    kind = argv[0]
    if kind == "http":
        if len(argv) != 2:
            print("usage: healthcheck.py http URL")
            return 2
        ok, message = check_http(argv[1])
    elif kind == "worker":
        ok, message = check_worker()
    else:
        from services.domain.settings import load_settings

        settings = load_settings(required=True)
        port, path = (settings.api.port, "/api/health") if kind == "api" else (settings.gateway.port, "/health")
        ok, message = check_http(f"http://127.0.0.1:{port}{path}")
    print(message)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
