"""Prometheus metrics: what operators watch at a glance.

Counters and histograms live in the process that moves them (web, worker);
backlog figures are read from PostgreSQL at scrape time, so they are right
however many workers run:

- ``hookpost_attempts_total{outcome}`` and ``hookpost_attempt_duration_seconds``
  (worker; ``tenant`` label only when ``HOOKPOST_METRICS_TENANT_LABELS`` is on,
  because tenant ids are unbounded in general);
- ``hookpost_deferrals_total{reason}`` (circuit open, rate limited, bulkhead);
- ``hookpost_circuit_transitions_total{to_state}``;
- ``hookpost_scheduler_dispatched_total{queue}`` and
  ``hookpost_scheduler_lag_seconds`` (due, or lease ended -> queued);
- ``hookpost_api_requests_total{route,method,status}`` (web);
- ``hookpost_deliveries_due``, ``hookpost_deliveries_pending``,
  ``hookpost_oldest_due_age_seconds``, ``hookpost_dead_letters``,
  ``hookpost_endpoints_by_circuit_state{state}`` (scrape time, web).

Web processes under gunicorn share counters through
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode). A
worker exposes its own counters on ``HOOKPOST_WORKER_METRICS_PORT``: those of
its one process in the threads and solo pools (the default is threads), and
those of all its children under prefork, which needs ``PROMETHEUS_MULTIPROC_DIR``
(the worker refuses to start prefork with a metrics port and without it).

With ``HOOKPOST_METRICS_TOKEN`` set, both ask for ``Authorization: Bearer
<token>`` and answer 401 without it; unset, they are open, and the network
must keep them private (docs/operations.md).
"""

from __future__ import annotations

import hmac
import os
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.conf import settings
from django.db.models import Count, Min
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    make_wsgi_app,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

ATTEMPTS = Counter("hookpost_attempts_total", "Delivery attempts by outcome.", ["outcome", "tenant"])
ATTEMPT_SECONDS = Histogram(
    "hookpost_attempt_duration_seconds",
    "Duration of one HTTP attempt.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30),
)
DEFERRALS = Counter("hookpost_deferrals_total", "Deliveries deferred without an attempt.", ["reason"])
CIRCUIT_TRANSITIONS = Counter("hookpost_circuit_transitions_total", "Breaker transitions.", ["to_state"])
DISPATCHED = Counter("hookpost_scheduler_dispatched_total", "Deliveries queued by the scheduler.", ["queue"])
SCHEDULER_LAG = Histogram(
    "hookpost_scheduler_lag_seconds",
    "From a delivery falling due (or a lease on it ending, if later) to the scheduler queueing it.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
API_REQUESTS = Counter("hookpost_api_requests_total", "API requests.", ["route", "method", "status"])


def _count_deferral(sender: object = None, reason: str = "", **kwargs: object) -> None:
    DEFERRALS.labels(reason=reason).inc()


def _count_transition(sender: object = None, to_state: str = "", **kwargs: object) -> None:
    CIRCUIT_TRANSITIONS.labels(to_state=to_state).inc()


def connect_signals() -> None:
    """Count the breaker's and admission's signals (``deliveries.signals``)."""
    from deliveries.signals import circuit_transitioned, delivery_deferred

    delivery_deferred.connect(_count_deferral, dispatch_uid="hookpost-metrics-deferral")
    circuit_transitioned.connect(_count_transition, dispatch_uid="hookpost-metrics-transition")


def record_attempt(*, outcome: str, duration_seconds: float, tenant_uid: str = "") -> None:
    tenant = tenant_uid if settings.HOOKPOST_METRICS_TENANT_LABELS else ""
    ATTEMPTS.labels(outcome=outcome, tenant=tenant).inc()
    ATTEMPT_SECONDS.observe(duration_seconds)


class BacklogCollector(Collector):
    """Backlog gauges computed from PostgreSQL when scraped."""

    def collect(self) -> Iterator[Metric]:
        from deliveries.models import Delivery
        from webhooks.models import Endpoint

        now = timezone.now()
        open_work = Delivery.objects.filter(status__in=("pending", "failed"))
        due = open_work.filter(next_attempt_at__lte=now)
        oldest = due.aggregate(oldest=Min("next_attempt_at"))["oldest"]
        yield _gauge("hookpost_deliveries_due", "Deliveries due now.", due.count())
        yield _gauge("hookpost_deliveries_pending", "Deliveries not finished.", open_work.count())
        yield _gauge(
            "hookpost_oldest_due_age_seconds",
            "How long the oldest due delivery has waited.",
            (now - oldest).total_seconds() if oldest else 0.0,
        )
        yield _gauge(
            "hookpost_dead_letters", "Dead deliveries kept.", Delivery.objects.filter(status="dead").count()
        )
        states = GaugeMetricFamily(
            "hookpost_endpoints_by_circuit_state", "Endpoints per breaker state.", labels=["state"]
        )
        counts = dict(Endpoint.objects.values_list("circuit_state").annotate(n=Count("pk")))
        for state in ("closed", "open", "half_open"):
            states.add_metric([state], counts.get(state, 0))
        yield states


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


_CHALLENGE = 'Bearer realm="metrics"'


def scrape_allowed(authorization: str) -> bool:
    """Whether an ``Authorization`` header value may read metrics: always when no token is configured."""
    token = settings.HOOKPOST_METRICS_TOKEN
    if not token:
        return True
    scheme, _, given = authorization.strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics`` in Prometheus text format; 401 without the token when one is configured."""
    if not scrape_allowed(request.headers.get("Authorization", "")):
        response = HttpResponse("unauthorized\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = _CHALLENGE
        return response
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    backlog = CollectorRegistry()
    backlog.register(BacklogCollector())
    body = generate_latest(registry) + generate_latest(backlog)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


class ApiMetricsMiddleware:
    """Counts API requests by route pattern (never the raw path: ids are unbounded)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        if match is not None and request.path.startswith("/api/"):
            API_REQUESTS.labels(
                route=match.route, method=request.method, status=str(response.status_code)
            ).inc()
        return response


def _token_guarded(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """The WSGI ``app``, answering 401 to scrapes without the configured token."""

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if scrape_allowed(environ.get("HTTP_AUTHORIZATION", "")):
            return app(environ, start_response)
        start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", _CHALLENGE)])
        return [b"unauthorized\n"]

    return guarded


def _worker_registry() -> CollectorRegistry:
    """This worker's counters: its own registry, or, with ``PROMETHEUS_MULTIPROC_DIR``
    set, what every process writing to that directory counted (the prefork pool's
    children count attempts in their own processes)."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes every few seconds: not worth a line
        pass


def start_worker_metrics_server(**kwargs: Any) -> WSGIServer | None:
    """Celery ``worker_init`` hook: serve this worker's metrics on a port if configured.

    Returns the server (in a daemon thread), or None when no port is set.
    """
    port = settings.HOOKPOST_WORKER_METRICS_PORT
    if not port:
        return None
    addr = settings.HOOKPOST_WORKER_METRICS_ADDR

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET

    server = make_server(addr, port, _token_guarded(make_wsgi_app(_worker_registry())), Server, _QuietHandler)
    threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True).start()
    return server
