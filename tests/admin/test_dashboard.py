"""The tenant dashboard: 24 hours by outcome as server-side SVG, unhealthy endpoints, dead letters."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from deliveries.dashboard import HourBucket, _nice_ceiling, hourly_chart, tenant_dashboard
from deliveries.models import Delivery
from tests.admin.conftest import History, make_delivery
from webhooks.models import Endpoint, EventType

pytestmark = pytest.mark.django_db


def test_dashboard_counts_by_hour_and_outcome(a: History, event_type: EventType) -> None:
    now = timezone.now()
    make_delivery(
        a.tenant, a.endpoint, event_type, status=Delivery.Status.FAILED, created_at=now - timedelta(hours=3)
    )
    make_delivery(a.tenant, a.endpoint, event_type, created_at=now - timedelta(hours=30))  # outside
    data = tenant_dashboard(tenant=a.tenant, now=now)
    assert len(data.hours) == 24
    assert data.hours[-1].counts == {"succeeded": 1, "dead": 1}
    assert data.hours[-4].counts == {"failed": 1}
    assert data.totals == {"succeeded": 1, "dead": 1, "failed": 1}
    assert data.dead_letters == 1
    assert data.success_rate == pytest.approx(1 / 3)


def test_chart_layout_stacks_within_the_plot() -> None:
    start = timezone.now().replace(minute=0, second=0, microsecond=0)
    hours = [
        HourBucket(start=start + timedelta(hours=i), counts={"succeeded": i, "dead": 1}) for i in range(24)
    ]
    chart = hourly_chart(hours)
    assert len(chart.bars) == 23 + 24  # hour 0 has no successes
    assert all(bar.y >= 0 and bar.y + bar.height <= chart.plot_bottom + 0.01 for bar in chart.bars)
    assert [t.label for t in chart.y_ticks] == ["0", "25", "50"]
    assert [_nice_ceiling(v) for v in (0, 1, 3, 7, 11, 240)] == [1, 1, 5, 10, 20, 500]
    assert [t.label for t in hourly_chart([]).y_ticks] == ["0", "1"]


def test_dashboard_page(client_a: Client, a: History) -> None:
    Endpoint.objects.filter(pk=a.endpoint.pk).update(circuit_state=Endpoint.CircuitState.OPEN)
    sick = Endpoint.objects.create(
        tenant=a.tenant,
        url="https://<b>sick</b>.example.com/",
        enabled=False,
        disabled_reason="The receiver answered 410 Gone.",
    )
    response = client_a.get(reverse("admin:webhooks_tenant_dashboard", args=[a.tenant.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "<svg" in body and body.count('class="hp-bar"') == 2
    assert 'id="hp-dead-letters"' in body and ">1</a>" in body
    assert a.endpoint.url in body and "410 Gone" in body
    assert "<b>sick</b>" not in body and "&lt;b&gt;sick" in body
    assert "http://" not in body.split("<svg", 1)[1].split("</svg>")[0].replace(
        "http://www.w3.org/2000/svg", ""
    )
    assert sick.pk


def test_index_links_the_users_dashboards(client_a: Client, a: History, b: History) -> None:
    body = client_a.get(reverse("admin:index")).content.decode()
    assert reverse("admin:webhooks_tenant_dashboard", args=[a.tenant.pk]) in body
    assert reverse("admin:webhooks_tenant_dashboard", args=[b.tenant.pk]) not in body
