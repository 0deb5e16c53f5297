"""Numbers the admin reads from query strings and forms: list filters' ids, the
page number, the rotation's grace period. Malformed or huge values are answered
as Django answers bad input (an empty list, a redirect to ``?e=1``, a message
on the form), never with a 500, and change nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from deliveries.models import Delivery, Message
from tests.admin.conftest import History
from webhooks.models import EndpointSecret, EventType, Membership

HISTORY_LISTS = [
    "admin:deliveries_delivery_changelist",
    "admin:deliveries_deadletter_changelist",
    "admin:deliveries_attempt_changelist",
]
NOT_IDS = ["%C2%B2", "%D9%A3", "%F0%9D%9F%A1", "-1", "+1", "1_0", "%201", "99999999999999999999", "0"]


@pytest.fixture
def viewer(login: Callable[..., Client], a: History, b: History) -> Client:
    return login(a.tenant, role=Membership.Role.VIEWER)


@pytest.mark.parametrize("name", HISTORY_LISTS)
def test_an_endpoint_filter_that_names_no_id_shows_an_empty_list(viewer: Client, name: str) -> None:
    for value in NOT_IDS:
        response = viewer.get(f"{reverse(name)}?endpoint={value}")

        assert response.status_code == 200, value
        assert list(response.context["cl"].result_list) == [], value


def test_a_tenant_filter_that_names_no_id_shows_an_empty_list(
    operator: Client, a: History, b: History
) -> None:
    # (The filter is offered, and read, only to users of several tenants.)
    for value in NOT_IDS:
        response = operator.get(f"{reverse('admin:deliveries_delivery_changelist')}?tenant={value}")

        assert response.status_code == 200, value
        assert list(response.context["cl"].result_list) == [], value


def test_a_valid_endpoint_filter_still_filters(viewer: Client, a: History, event_type: EventType) -> None:
    response = viewer.get(reverse("admin:deliveries_delivery_changelist"), {"endpoint": str(a.endpoint.pk)})

    assert response.status_code == 200
    assert {d.pk for d in response.context["cl"].result_list} == {a.delivered.pk, a.dead.pk}


@pytest.fixture
def long_history(a: History, event_type: EventType) -> History:
    """1,100 more deliveries of ``a``: past the paginator's exact count (1,000)."""
    now = timezone.now()
    messages = Message.objects.bulk_create(
        Message(
            tenant=a.tenant, event_type=event_type, payload={"n": n}, created_at=now - timedelta(seconds=n)
        )
        for n in range(1100)
    )
    Delivery.objects.bulk_create(
        Delivery(
            tenant=a.tenant,
            message=message,
            endpoint=a.endpoint,
            event_type=event_type,
            status=Delivery.Status.SUCCEEDED,
            attempt_count=1,
            created_at=message.created_at,
            finished_at=message.created_at,
        )
        for message in messages
    )
    return a


def test_a_page_beyond_any_offset_or_below_one_redirects_like_any_invalid_page(
    viewer: Client, long_history: History
) -> None:
    url = reverse("admin:deliveries_delivery_changelist")
    for page in ["99999999999999999999", str(2**63), "9" * 5000, "0", "-1"]:
        response = viewer.get(url, {"p": page})

        # Django's answer to an invalid page: back to the list, flagged with ?e=1.
        assert response.status_code == 302, page[:30]
        assert response["Location"] == f"{url}?e=1"
        assert viewer.get(response["Location"]).status_code == 200


def test_a_page_that_is_no_number_shows_the_first_page(viewer: Client, long_history: History) -> None:
    for page in ["%C2%B2", "%D9%A3", "%F0%9D%9F%A1", "+2", "%202", "2.0", "abc"]:
        # As Django's ChangeList reads a page it cannot read: page 1 (int() would read ٣ as 3).
        response = viewer.get(f"{reverse('admin:deliveries_delivery_changelist')}?p={page}")

        assert response.status_code == 200, page
        assert response.context["cl"].page_num == 1 and len(response.context["cl"].result_list) == 50


def test_pages_of_a_long_history_still_work(viewer: Client, long_history: History) -> None:
    url = reverse("admin:deliveries_delivery_changelist")

    second = viewer.get(url, {"p": "2"})
    past_the_end = viewer.get(url, {"p": "1000"})

    assert second.status_code == 200 and second.context["cl"].paginator.is_estimate
    assert len(second.context["cl"].result_list) == 50
    assert past_the_end.status_code == 200 and list(past_the_end.context["cl"].result_list) == []


def _secrets(history: History) -> list[tuple[int, object]]:
    return list(
        EndpointSecret.objects.filter(endpoint=history.endpoint)
        .order_by("pk")
        .values_list("pk", "expires_at")
    )


@pytest.mark.parametrize(
    "grace_hours",
    ["inf", "-inf", "Infinity", "nan", "1e308", "1e3", "²", "٣", "", " 1", "-1", "169", "168.5", "9" * 400],
)
def test_a_rotation_with_an_unreadable_grace_period_is_a_form_error_and_changes_nothing(
    client_a: Client, a: History, grace_hours: str
) -> None:
    url = reverse("admin:webhooks_endpoint_secret", args=[a.endpoint.pk])
    before = _secrets(a)

    response = client_a.post(url, {"grace_hours": grace_hours})

    assert response.status_code == 302 and response["Location"] == url
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "The grace period must be a number from 0 to 168 hours."
    ]
    assert _secrets(a) == before


@pytest.mark.parametrize(
    "grace_hours, expected", [("1.5", timedelta(hours=1.5)), ("168", timedelta(hours=168))]
)
def test_a_rotation_takes_fractional_and_maximal_grace_periods(
    client_a: Client, a: History, grace_hours: str, expected: timedelta
) -> None:
    old = EndpointSecret.objects.get(endpoint=a.endpoint, expires_at__isnull=True)

    response = client_a.post(
        reverse("admin:webhooks_endpoint_secret", args=[a.endpoint.pk]), {"grace_hours": grace_hours}
    )

    assert response.status_code == 302
    old.refresh_from_db()
    assert old.expires_at is not None
    assert abs((old.expires_at - timezone.now()) - expected) < timedelta(minutes=1)


@pytest.mark.parametrize(
    "name, query",
    [
        ("admin:deliveries_delivery_changelist", "status__exact=%00"),
        ("admin:deliveries_deadletter_changelist", "status__exact=dead%00"),
        ("admin:deliveries_attempt_changelist", "trigger__exact=%00"),
        ("admin:webhooks_endpoint_changelist", "circuit_state__exact=%00"),
        ("admin:webhooks_endpoint_changelist", "url__startswith=%00"),
    ],
)
def test_a_filter_value_with_nul_redirects_like_any_invalid_lookup(
    viewer: Client, name: str, query: str
) -> None:
    # PostgreSQL refuses NUL in text: the lookup is invalid, not a server error.
    url = reverse(name)

    response = viewer.get(f"{url}?{query}")

    assert response.status_code in (302, 400)
    if response.status_code == 302:
        assert response["Location"] == f"{url}?e=1"
