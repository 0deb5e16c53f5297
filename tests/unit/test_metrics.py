"""/metrics: API counters, backlog gauges read from PostgreSQL, and the scrape token (web and worker)."""

from __future__ import annotations

import re
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from config.metrics import start_worker_metrics_server
from tests.factories import EndpointFactory


def _value(text: str, name: str, **labels: str) -> float:
    """The sample ``name{labels}`` in Prometheus text, 0 when absent."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^(\w+)(\{.*\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return 0.0


@pytest.mark.django_db
def test_api_requests_and_backlog_are_counted(api, client, tenant, event_type):
    EndpointFactory.create(tenant=tenant)
    EndpointFactory.create(tenant=tenant, circuit_state="open")
    route = "api/v1/tenants/<str:uid>/messages/"
    before = _value(
        client.get("/metrics").content.decode(),
        "hookpost_api_requests_total",
        route=route,
        method="POST",
        status="202",
    )

    for n in range(3):
        assert (
            api.post(
                f"/api/v1/tenants/{tenant.uid}/messages/",
                {"event_type": event_type.name, "payload": {"n": n}},
                format="json",
            ).status_code
            == 202
        )
    api.post(f"/api/v1/tenants/{tenant.uid}/messages/", {"event_type": "nope", "payload": {}}, format="json")

    text = client.get("/metrics").content.decode()
    assert _value(text, "hookpost_api_requests_total", route=route, method="POST", status="202") == before + 3
    assert _value(text, "hookpost_api_requests_total", route=route, method="POST", status="422") >= 1
    assert _value(text, "hookpost_deliveries_pending") == 6
    assert _value(text, "hookpost_deliveries_due") == 6
    assert _value(text, "hookpost_endpoints_by_circuit_state", state="open") == 1
    assert _value(text, "hookpost_endpoints_by_circuit_state", state="closed") == 1
    assert "/api/v1/tenants/acme" not in text  # routes, never raw paths with ids


WRONG_AUTHORIZATIONS = [
    None,
    "",
    "Bearer",
    "Bearer wrong",
    "Bearer s3cret2",
    "Basic s3cret",
    "s3cret",  # the token without its scheme
    "Token s3cret",
]


@pytest.mark.django_db
@pytest.mark.parametrize("authorization", WRONG_AUTHORIZATIONS)
def test_with_a_token_configured_metrics_refuses_scrapes_without_it(client, settings, authorization):
    settings.HOOKPOST_METRICS_TOKEN = "s3cret"
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}

    response = client.get("/metrics", **headers)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"hookpost_" not in response.content


@pytest.mark.django_db
@pytest.mark.parametrize("authorization", ["Bearer s3cret", "bearer s3cret", "Bearer  s3cret "])
def test_with_a_token_configured_metrics_answers_the_bearer(client, settings, authorization):
    settings.HOOKPOST_METRICS_TOKEN = "s3cret"

    response = client.get("/metrics", HTTP_AUTHORIZATION=authorization)

    assert response.status_code == 200
    assert b"hookpost_deliveries_due" in response.content


@pytest.mark.django_db
def test_without_a_token_metrics_is_open(client, settings):
    settings.HOOKPOST_METRICS_TOKEN = None

    assert client.get("/metrics").status_code == 200


def _scrape(port: int, authorization: str | None) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def worker_metrics(settings) -> Iterator[int]:
    """A worker's metrics server on a free port, stopped afterwards."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    settings.HOOKPOST_WORKER_METRICS_PORT = port
    settings.HOOKPOST_WORKER_METRICS_ADDR = "127.0.0.1"
    server = start_worker_metrics_server()
    assert server is not None
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()


def test_the_worker_metrics_server_requires_the_token_when_one_is_configured(worker_metrics, settings):
    settings.HOOKPOST_METRICS_TOKEN = "s3cret"

    for authorization in WRONG_AUTHORIZATIONS:
        status, body = _scrape(worker_metrics, authorization)
        assert status == 401, authorization
        assert "hookpost_" not in body
    status, body = _scrape(worker_metrics, "Bearer s3cret")
    assert status == 200
    assert "hookpost_attempts_total" in body


def test_the_worker_metrics_server_is_open_without_a_token(worker_metrics, settings):
    settings.HOOKPOST_METRICS_TOKEN = None

    status, body = _scrape(worker_metrics, None)

    assert status == 200 and "hookpost_attempts_total" in body


def test_no_worker_metrics_server_without_a_port(settings):
    settings.HOOKPOST_WORKER_METRICS_PORT = 0

    assert start_worker_metrics_server() is None


@pytest.mark.parametrize("given", ["name", "class"])  # worker_init sees either, by how the pool was set
def test_a_prefork_worker_with_a_metrics_port_needs_a_multiprocess_directory(settings, monkeypatch, given):
    from celery.concurrency import get_implementation

    from config.celery import _worker_metrics

    settings.HOOKPOST_WORKER_METRICS_PORT = 9999
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    pool = "prefork" if given == "name" else get_implementation("prefork")
    sender = type("Worker", (), {"pool_cls": pool})

    # the children would count where the server cannot see: the worker refuses to start
    with pytest.raises(SystemExit, match="PROMETHEUS_MULTIPROC_DIR"):
        _worker_metrics(sender=sender)
