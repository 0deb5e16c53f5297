"""/metrics: API counters and backlog gauges read from PostgreSQL."""

from __future__ import annotations

import re

import pytest

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
    EndpointFactory(tenant=tenant)
    EndpointFactory(tenant=tenant, circuit_state="open")
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


@pytest.mark.django_db
def test_metrics_token(client, settings):
    settings.HOOKPOST_METRICS_TOKEN = "s3cret"

    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200
