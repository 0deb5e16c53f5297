"""Health probes for load balancers and orchestrators.

- ``/healthz``: the process is alive and serving (no dependencies checked, so
  a database outage does not make an orchestrator kill every web process);
- ``/readyz``: PostgreSQL and Redis answer, and the process is not shutting
  down; 503 otherwise, with which check failed.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

_shutting_down = threading.Event()


def mark_shutting_down() -> None:
    """Make /readyz answer 503 so the load balancer drains this process."""
    _shutting_down.set()


def install_sigterm_hook() -> None:
    """On SIGTERM, flag shutdown, then run the previous handler (gunicorn's graceful stop)."""
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: Any) -> None:
        mark_shutting_down()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, handler)


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _check_database(), "redis": _check_redis()}
    if _shutting_down.is_set():
        checks["shutdown"] = "shutting down"
    ready = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )


def _check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as exc:  # any failure means not ready; say which
        return f"error: {type(exc).__name__}"


def _check_redis() -> str:
    url = settings.REDIS_URL
    if not url:
        return "ok"  # no Redis configured (in-process cache, development)
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        client.ping()
        return "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}"
