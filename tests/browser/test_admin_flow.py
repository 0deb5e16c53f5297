"""A tenant user's day in the admin, in a real Chromium, with a real worker
delivering to a real receiver.

Given a tenant, an API key and a tenant user made with ``create_tenant_user``,
the user logs in, registers an endpoint (the address policy refuses a private
URL first), a message is published through the HTTP API, the worker fails
twice and dead-letters it, the user finds the delivery and its attempts (the
hostile payload and response body shown as text, no script run), replays the
dead letter and sees the new, successful attempt.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import Page, expect

from deliveries.dashboard import hourly_chart, tenant_dashboard
from deliveries.models import Attempt, Delivery, Message
from tests.browser.conftest import PASSWORD, Watch, screenshot
from tests.e2e.helpers import wait_for_status, wait_until
from tests.e2e.receiver import Receiver, Reply
from webhooks import services
from webhooks.models import Endpoint, EventType, Tenant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PAYLOAD_SCRIPT = "<script>alert('payload')</script>"
BODY_SCRIPT = "<script>alert('response')</script>"


def _world() -> tuple[Tenant, str]:
    tenant = services.tenant_create(uid="acme", name="Acme Inc.")
    services.event_type_create(name="invoice.paid", description="An invoice was paid.")
    call_command("create_tenant_user", "alice", "--tenant", "acme", "--password", PASSWORD)
    _, raw_key = services.api_key_create(tenant=tenant, name="billing service")
    return tenant, raw_key


def _seed_day(tenant: Tenant, endpoint: Endpoint) -> None:
    """A day of earlier history: busier in some hours, one bad hour, a few retries."""
    event_type = EventType.objects.get(name="invoice.paid")
    now = timezone.now()
    rows: list[tuple[datetime, str]] = []
    for hour in range(1, 24):
        at = now - timedelta(hours=hour)
        for i in range(12 + (hour * 7) % 25):
            if hour == 9 and i % 2:
                status = Delivery.Status.DEAD
            elif i % 9 == 0:
                status = Delivery.Status.FAILED
            else:
                status = Delivery.Status.SUCCEEDED
            rows.append((at - timedelta(seconds=i), status))
    messages = Message.objects.bulk_create(
        Message(tenant=tenant, event_type=event_type, payload={"i": n}, created_at=at)
        for n, (at, _) in enumerate(rows)
    )
    Delivery.objects.bulk_create(
        Delivery(
            tenant=tenant,
            message=m,
            endpoint=endpoint,
            event_type=event_type,
            status=status,
            attempt_count=1,
            created_at=at,
        )
        for m, (at, status) in zip(messages, rows, strict=True)
    )


def _login(page: Page) -> None:
    page.goto("/admin/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_contain_text("Hookpost")
    expect(page.locator("#hp-dashboards")).to_contain_text("Acme Inc.")


def _create_endpoint(page: Page, url: str) -> Endpoint:
    page.goto("/admin/webhooks/endpoint/add/")
    page.fill("#id_url", "http://10.1.2.3/hooks")  # private: the address policy refuses it
    page.fill("#id_retry_schedule", "[1]")  # one retry after ~1 s, then dead
    page.click("input[name=_save]")
    expect(page.locator(".field-url .errorlist")).to_contain_text("not allowed")
    page.fill("#id_url", url)
    page.click("input[name=_save]")
    expect(page.locator(".messagelist .success")).to_contain_text("was added successfully")
    expect(page.locator("#result_list")).to_contain_text(url)
    return Endpoint.objects.get(url=url)


def _publish(page: Page, live_server: Any, raw_key: str) -> str:
    response = page.request.post(
        f"{live_server.url}/api/v1/tenants/acme/messages/",
        headers={"Authorization": f"Bearer {raw_key}", "Content-Type": "application/json"},
        data=json.dumps({"event_type": "invoice.paid", "payload": {"note": PAYLOAD_SCRIPT, "amount": 42}}),
    )
    assert response.status == 202, response.text()
    return str(response.json()["id"])


def test_tenant_user_creates_endpoint_sees_attempts_and_replays_a_dead_letter(
    page: Page, watch: Watch, live_server: Any, worker: Any, receiver: Receiver, browser_settings: Any
) -> None:
    tenant, raw_key = _world()
    url = receiver.script(
        "/hooks",
        Reply(500, {"Content-Type": "text/html"}, BODY_SCRIPT.encode()),
        Reply(500, {"Content-Type": "text/html"}, BODY_SCRIPT.encode()),
        Reply(200, {"Content-Type": "application/json"}, b'{"thanks": true}'),
    )
    _login(page)
    endpoint = _create_endpoint(page, url)

    message_id = _publish(page, live_server, raw_key)
    wait_for_status(message_id, endpoint.uid, Delivery.Status.DEAD, timeout=30)

    # The history: find the delivery by its webhook-id and open it.
    page.goto(f"/admin/deliveries/delivery/?q={message_id}")
    row = page.locator("#result_list tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Dead letter")
    row.get_by_role("link", name=message_id).click()
    attempts = page.locator(".inline-related:not(.empty-form)")
    expect(attempts).to_have_count(2)
    expect(attempts.first).to_contain_text("500")
    # Hostile content is shown as text: literally, and no dialog ever opened.
    expect(page.locator(".field-payload_display pre")).to_contain_text(PAYLOAD_SCRIPT)
    expect(page.locator(".field-response_body_display pre").first).to_have_text(BODY_SCRIPT)
    assert page.evaluate("() => [...document.scripts].some(s => s.textContent.includes('alert('))") is False
    expect(page.locator(".field-request_headers_display pre").first).to_contain_text(
        "webhook-signature: v1,[redacted]"
    )

    # The dead letter: replay it from the dead-letter list.
    page.goto("/admin/deliveries/deadletter/")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    page.locator("#result_list input.action-select").check()
    page.select_option("select[name=action]", "replay_selected")
    page.click("button[name=index]")
    expect(page.locator(".messagelist .success")).to_contain_text("1 delivery queued for replay")
    expect(page.locator("#result_list")).to_have_count(0)  # no dead letters left

    delivery = wait_for_status(message_id, endpoint.uid, Delivery.Status.SUCCEEDED, timeout=30)
    page.goto(f"/admin/deliveries/delivery/{delivery.pk}/change/")
    attempts = page.locator(".inline-related:not(.empty-form)")
    expect(attempts).to_have_count(3)
    expect(attempts.nth(2)).to_contain_text("Replay")
    expect(attempts.nth(2).locator(".field-response_status_display")).to_contain_text("200")
    expect(page.locator(".field-status_display")).to_contain_text("Succeeded")
    screenshot(page, "delivery-detail")

    got = receiver.received("/hooks")
    assert len(got) == 3 and {r.headers["webhook-id"] for r in got} == {message_id}
    assert [a.trigger for a in Attempt.objects.filter(delivery=delivery).order_by("number")] == [
        "scheduled",
        "scheduled",
        "replay",
    ]
    assert watch.dialogs == []
    assert tenant.pk


def test_secret_test_event_and_dashboard(
    page: Page, watch: Watch, live_server: Any, worker: Any, receiver: Receiver, browser_settings: Any
) -> None:
    tenant, _ = _world()
    url = receiver.script("/test", Reply(200))
    endpoint = services.endpoint_create(tenant=tenant, url=url, description="billing").endpoint
    _login(page)

    # Reveal, then rotate: the old secret keeps signing beside the new one.
    page.goto(f"/admin/webhooks/endpoint/{endpoint.pk}/change/")
    expect(page.locator(".field-signing_secret")).to_contain_text("whsec_••••")
    page.click("#hp-reveal")
    old = page.locator("#hp-current-secret").inner_text()
    assert old.startswith("whsec_")
    page.click("#hp-rotate")
    expect(page.locator(".messagelist .success")).to_contain_text("Secret rotated")
    assert page.locator("#hp-current-secret").inner_text() not in ("", old)
    expect(page.locator("#hp-previous-secrets")).to_contain_text(old)

    # Send a test event; the worker delivers it, signed with both secrets.
    page.goto(f"/admin/webhooks/endpoint/{endpoint.pk}/change/")
    page.click("#hp-test-event")
    expect(page.locator(".messagelist .success")).to_contain_text("Test event queued")
    (got,) = receiver.wait_for(1, "/test")
    assert len(got.headers["webhook-signature"].split()) == 2
    delivery = wait_until(
        lambda: Delivery.objects.filter(endpoint=endpoint, status=Delivery.Status.SUCCEEDED).first(),
        20,
        "test event",
    )
    page.click(".messagelist a")
    expect(page.locator(".inline-related:not(.empty-form)")).to_contain_text("Test")
    assert delivery.event_type.name == "hookpost.test"

    # The dashboard: a day of history as server-side SVG bars, nothing fetched elsewhere.
    _seed_day(tenant, endpoint)
    Endpoint.objects.filter(pk=endpoint.pk).update(circuit_state=Endpoint.CircuitState.OPEN)
    expected = tenant_dashboard(tenant=tenant)
    page.goto("/admin/")
    page.get_by_role("link", name="Acme Inc.").click()
    expect(page.locator("#hp-chart rect.hp-bar")).to_have_count(len(hourly_chart(expected.hours).bars))
    expect(page.locator("#hp-total")).to_have_text(str(sum(expected.totals.values())))
    expect(page.locator("#hp-dead-letters")).to_have_text(str(expected.dead_letters))
    expect(page.locator("#hp-unhealthy-endpoints")).to_contain_text("Open")
    screenshot(page, "dashboard")
    foreign = [u for u in watch.requests if not u.startswith(live_server.url) and not u.startswith("data:")]
    assert foreign == []
    assert watch.dialogs == []
