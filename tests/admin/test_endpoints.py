"""Endpoints in the admin: create and edit through the services, secret reveal
and rotation, test event, recover, health columns."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from deliveries.models import Attempt, Delivery, Message
from deliveries.services import TEST_EVENT_TYPE
from tests.admin.conftest import History, make_delivery
from webhooks.models import Endpoint, EndpointSecret, EventType
from webhooks.selectors import endpoint_signing_secrets

pytestmark = pytest.mark.django_db


def _form(tenant_pk: int, **fields: Any) -> dict[str, Any]:
    data = {
        "tenant": tenant_pk,
        "url": "https://hooks.example.com/in",
        "description": "billing",
        "enabled": "on",
        "headers": '{"X-Team": "billing"}',
        "rate_limit": "",
        "timeout_seconds": "10",
        "retry_schedule": "",
    }
    data.update(fields)
    return data


def test_create_endpoint_through_the_service(client_a: Client, a: History, event_type: EventType) -> None:
    response = client_a.post(
        reverse("admin:webhooks_endpoint_add"),
        _form(a.tenant.pk, event_types=[event_type.pk], rate_limit="5"),
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    endpoint = Endpoint.objects.get(url="https://hooks.example.com/in")
    assert endpoint.tenant == a.tenant
    assert endpoint.headers == {"X-Team": "billing"}
    assert (endpoint.rate_limit, endpoint.timeout_seconds) == (5, 10)
    assert list(endpoint.event_types.all()) == [event_type]
    # The service made its signing secret.
    assert EndpointSecret.objects.filter(endpoint=endpoint, expires_at__isnull=True).count() == 1
    assert response["Location"].endswith(reverse("admin:webhooks_endpoint_changelist"))


@pytest.mark.parametrize(
    "field,value,expected",
    [
        ("url", "http://10.0.0.5/hook", "private"),
        ("url", "http://169.254.169.254/latest", "link-local"),
        ("url", "ftp://example.com/x", "http"),
        ("headers", '{"webhook-signature": "x"}', "cannot be overridden"),
        ("retry_schedule", "[0]", "Each delay"),
    ],
)
def test_service_rules_show_as_form_errors(
    client_a: Client, a: History, settings: Any, field: str, value: str, expected: str
) -> None:
    settings.HOOKPOST_ALLOWED_TARGET_NETWORKS = []
    response = client_a.post(reverse("admin:webhooks_endpoint_add"), _form(a.tenant.pk, **{field: value}))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert expected.lower() in " ".join(errors.get(field, [])).lower(), errors
    assert not Endpoint.objects.filter(tenant=a.tenant).exclude(pk=a.endpoint.pk).exists()


@pytest.mark.parametrize(
    "value,expected",
    [
        ('{"X-Emoji": "\\ud83d\\ude00 caf\\u00e9"}', "cannot carry"),
        ('{"X-Nul": "a\\u0000b"}', "control characters"),
        ('{"X-Lead": " padded"}', "whitespace"),
        ('{"Bad Name": "v"}', "not a valid header name"),
    ],
)
def test_headers_http_cannot_carry_are_form_errors_on_add_and_change(
    client_a: Client, a: History, value: str, expected: str
) -> None:
    # when a tenant adds an endpoint, or edits one, with such a header
    added = client_a.post(reverse("admin:webhooks_endpoint_add"), _form(a.tenant.pk, headers=value))
    changed = client_a.post(
        reverse("admin:webhooks_endpoint_change", args=[a.endpoint.pk]),
        _form(a.tenant.pk, url=a.endpoint.url, headers=value),
    )

    # then both pages answer with the reason next to the headers field, and nothing is saved
    for response in (added, changed):
        assert response.status_code == 200
        errors = response.context["adminform"].form.errors
        assert expected.lower() in " ".join(errors.get("headers", [])).lower(), errors
    assert not Endpoint.objects.filter(tenant=a.tenant).exclude(pk=a.endpoint.pk).exists()
    a.endpoint.refresh_from_db()
    assert a.endpoint.headers != json.loads(value)


def test_edit_disable_records_reason_and_keeps_secret(client_a: Client, a: History) -> None:
    secret_before = endpoint_signing_secrets(endpoint=a.endpoint)
    response = client_a.post(
        reverse("admin:webhooks_endpoint_change", args=[a.endpoint.pk]),
        {
            "url": a.endpoint.url,
            "description": "paused",
            "headers": "{}",
            "timeout_seconds": "15",
            "retry_schedule": "",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    a.endpoint.refresh_from_db()
    assert not a.endpoint.enabled
    assert a.endpoint.disabled_reason == "Disabled by the tenant." and a.endpoint.disabled_at is not None
    assert a.endpoint.description == "paused"
    assert endpoint_signing_secrets(endpoint=a.endpoint) == secret_before


def test_edit_to_a_refused_url_is_a_form_error(client_a: Client, a: History, settings: Any) -> None:
    settings.HOOKPOST_ALLOWED_TARGET_NETWORKS = []
    response = client_a.post(
        reverse("admin:webhooks_endpoint_change", args=[a.endpoint.pk]),
        {"url": "http://127.0.0.1:8000/", "enabled": "on", "headers": "{}", "timeout_seconds": "15"},
    )
    assert response.status_code == 200
    assert "url" in response.context["adminform"].form.errors
    a.endpoint.refresh_from_db()
    assert a.endpoint.url == "https://acme.example.com/hooks"


def test_the_in_flight_cap_sits_beside_the_rate_limit_with_its_default(
    client_a: Client, a: History, settings: Any
) -> None:
    settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT = 7
    for url in (
        reverse("admin:webhooks_endpoint_add"),
        reverse("admin:webhooks_endpoint_change", args=[a.endpoint.pk]),
    ):
        form = client_a.get(url).context["adminform"]
        delivery = next(fields for name, fields in form.fieldsets if name == "Delivery")["fields"]
        assert delivery[delivery.index("rate_limit") + 1] == "max_in_flight"
        help_text = form.form.fields["max_in_flight"].help_text
        assert "platform default (7)" in help_text and "1 to 1,000" in help_text


def test_create_and_change_the_in_flight_cap(client_a: Client, a: History) -> None:
    # when a tenant adds an endpoint capped at 3
    response = client_a.post(reverse("admin:webhooks_endpoint_add"), _form(a.tenant.pk, max_in_flight="3"))

    # then the service stores the cap
    assert response.status_code == 302, response.context["adminform"].form.errors
    endpoint = Endpoint.objects.get(url="https://hooks.example.com/in")
    assert endpoint.max_in_flight == 3

    # when it edits the cap to 5, then empties it
    change = reverse("admin:webhooks_endpoint_change", args=[endpoint.pk])
    response = client_a.post(change, _form(a.tenant.pk, max_in_flight="5"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    endpoint.refresh_from_db()
    assert endpoint.max_in_flight == 5
    response = client_a.post(change, _form(a.tenant.pk, max_in_flight=""))
    assert response.status_code == 302, response.context["adminform"].form.errors
    endpoint.refresh_from_db()
    # and the endpoint inherits the platform default again
    assert endpoint.max_in_flight is None


def test_an_endpoint_added_without_a_cap_inherits_the_default(client_a: Client, a: History) -> None:
    response = client_a.post(reverse("admin:webhooks_endpoint_add"), _form(a.tenant.pk))

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Endpoint.objects.get(url="https://hooks.example.com/in").max_in_flight is None


# Not an integer from 1 to HOOKPOST_ENDPOINT_MAX_IN_FLIGHT_LIMIT (1,000) in ASCII digits.
BAD_CAPS = ["0", "-1", "1001", "99999999999999999999", "2.5", "5.0", "ten", "\u0663", "1e3"]


@pytest.mark.parametrize("value", BAD_CAPS)
def test_a_bad_in_flight_cap_is_a_form_error_and_nothing_changes(
    client_a: Client, a: History, value: str
) -> None:
    a.endpoint.max_in_flight = 4
    a.endpoint.save()
    change = reverse("admin:webhooks_endpoint_change", args=[a.endpoint.pk])

    # when a tenant adds an endpoint, or edits one, with such a cap
    added = client_a.post(reverse("admin:webhooks_endpoint_add"), _form(a.tenant.pk, max_in_flight=value))
    changed = client_a.post(
        change, _form(a.tenant.pk, url=a.endpoint.url, description="x", max_in_flight=value)
    )

    # then both pages answer with an error next to the cap, and nothing is saved
    for response in (added, changed):
        assert response.status_code == 200
        errors = response.context["adminform"].form.errors
        assert list(errors) == ["max_in_flight"], errors
    assert not Endpoint.objects.filter(tenant=a.tenant).exclude(pk=a.endpoint.pk).exists()
    a.endpoint.refresh_from_db()
    assert (a.endpoint.max_in_flight, a.endpoint.description) == (4, "")


def test_the_in_flight_limit_is_read_from_the_settings(client_a: Client, a: History, settings: Any) -> None:
    settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT_LIMIT = 50

    refused = client_a.post(reverse("admin:webhooks_endpoint_add"), _form(a.tenant.pk, max_in_flight="51"))
    assert refused.status_code == 200
    assert "from 1 to 50" in " ".join(refused.context["adminform"].form.errors["max_in_flight"])
    accepted = client_a.post(reverse("admin:webhooks_endpoint_add"), _form(a.tenant.pk, max_in_flight="50"))
    assert accepted.status_code == 302, accepted.context["adminform"].form.errors
    assert Endpoint.objects.get(url="https://hooks.example.com/in").max_in_flight == 50


def test_reveal_and_rotate_secret(client_a: Client, a: History) -> None:
    old = endpoint_signing_secrets(endpoint=a.endpoint)[0]
    page = client_a.get(reverse("admin:webhooks_endpoint_secret", args=[a.endpoint.pk]))
    assert page.status_code == 200 and old in page.content.decode()
    assert page["Cache-Control"].startswith("max-age=0") or "no-cache" in page["Cache-Control"]
    rotated = client_a.post(
        reverse("admin:webhooks_endpoint_secret", args=[a.endpoint.pk]), {"grace_hours": "2"}
    )
    assert rotated.status_code == 302
    secrets = endpoint_signing_secrets(endpoint=a.endpoint)
    assert len(secrets) == 2 and secrets[1] == old and secrets[0] != old
    # secrets are encrypted at rest, so they cannot be looked up by value
    (previous,) = [row for row in EndpointSecret.objects.filter(endpoint=a.endpoint) if row.secret == old]
    assert abs((previous.expires_at - timezone.now()) - timedelta(hours=2)) < timedelta(minutes=1)


def test_change_page_masks_the_secret(client_a: Client, a: History) -> None:
    secret = endpoint_signing_secrets(endpoint=a.endpoint)[0]
    page = client_a.get(reverse("admin:webhooks_endpoint_change", args=[a.endpoint.pk])).content.decode()
    assert secret not in page and "Reveal or rotate" in page


def test_send_test_event_creates_one_delivery_to_that_endpoint(
    client_a: Client, a: History, event_type: EventType
) -> None:
    other = Endpoint.objects.create(tenant=a.tenant, url="https://other.example.com/")
    response = client_a.post(reverse("admin:webhooks_endpoint_test_event", args=[a.endpoint.pk]))
    assert response.status_code == 302
    message = Message.objects.get(tenant=a.tenant, event_type__name=TEST_EVENT_TYPE)
    (delivery,) = Delivery.objects.filter(message=message)
    assert delivery.endpoint == a.endpoint and delivery.status == Delivery.Status.PENDING
    assert delivery.next_trigger == Attempt.Trigger.TEST
    assert not Delivery.objects.filter(endpoint=other).exists()


def test_test_event_on_disabled_endpoint_is_refused(client_a: Client, a: History) -> None:
    Endpoint.objects.filter(pk=a.endpoint.pk).update(enabled=False)
    response = client_a.post(reverse("admin:webhooks_endpoint_test_event", args=[a.endpoint.pk]), follow=True)
    assert "disabled" in " ".join(str(m) for m in response.context["messages"])
    assert not Message.objects.filter(event_type__name=TEST_EVENT_TYPE).exists()


def test_recover_replays_the_window(client_a: Client, a: History, event_type: EventType) -> None:
    old = make_delivery(
        a.tenant,
        a.endpoint,
        event_type,
        status=Delivery.Status.DEAD,
        created_at=timezone.now() - timedelta(days=3),
    )
    form = client_a.get(reverse("admin:webhooks_endpoint_recover", args=[a.endpoint.pk]))
    assert form.status_code == 200
    since = (timezone.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    response = client_a.post(
        reverse("admin:webhooks_endpoint_recover", args=[a.endpoint.pk]),
        {"since": since, "statuses": ["dead", "failed", "skipped"]},
        follow=True,
    )
    assert "1 delivery queued for replay" in " ".join(str(m) for m in response.context["messages"])
    a.dead.refresh_from_db()
    old.refresh_from_db()
    assert a.dead.status == Delivery.Status.PENDING and a.dead.replay_count == 1
    assert old.status == Delivery.Status.DEAD  # outside the window


def test_recover_with_bad_window_shows_the_error(client_a: Client, a: History) -> None:
    response = client_a.post(
        reverse("admin:webhooks_endpoint_recover", args=[a.endpoint.pk]),
        {"since": "2030-01-01T00:00", "until": "2029-01-01T00:00", "statuses": ["dead"]},
    )
    assert response.status_code == 200
    assert "later than since" in response.content.decode()


def test_health_columns(client_a: Client, a: History, event_type: EventType) -> None:
    for _ in range(2):
        make_delivery(a.tenant, a.endpoint, event_type)
    Endpoint.objects.filter(pk=a.endpoint.pk).update(circuit_state=Endpoint.CircuitState.OPEN)
    response = client_a.get(reverse("admin:webhooks_endpoint_changelist"))
    (row,) = response.context["cl"].result_list
    # 3 succeeded and 1 dead in the last 24 hours.
    assert row.health_24h.succeeded == 3 and row.health_24h.attempted == 4
    body = response.content.decode()
    assert "75.0 % (3/4)" in body and "Open" in body


def test_endpoint_list_queries_do_not_grow_with_rows(
    client_a: Client, a: History, event_type: EventType, django_assert_max_num_queries: Callable[..., Any]
) -> None:
    for n in range(30):
        Endpoint.objects.create(tenant=a.tenant, url=f"https://e{n}.example.com/")
    with django_assert_max_num_queries(14):
        assert client_a.get(reverse("admin:webhooks_endpoint_changelist")).status_code == 200


def test_delete_endpoint_uses_a_summary_not_every_delivery(client_a: Client, a: History) -> None:
    url = reverse("admin:webhooks_endpoint_delete", args=[a.endpoint.pk])
    confirm = client_a.get(url)
    assert confirm.status_code == 200 and "deliveries and their attempts" in confirm.content.decode().lower()
    assert client_a.post(url, {"post": "yes"}).status_code == 302
    assert not Endpoint.objects.filter(pk=a.endpoint.pk).exists()
    assert not Delivery.objects.filter(endpoint_id=a.endpoint.pk).exists()
