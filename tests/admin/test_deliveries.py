"""Delivery history, dead letters and replay in the admin."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from deliveries.models import Attempt, Delivery
from tests.admin.conftest import History, make_attempt, make_delivery
from webhooks.models import EventType

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert('x')</script>"


def test_detail_shows_payload_and_attempts_escaped(
    client_a: Client, a: History, event_type: EventType
) -> None:
    delivery = make_delivery(a.tenant, a.endpoint, event_type, payload={"note": SCRIPT, "n": [1, 2]})
    attempt = make_attempt(delivery, status=500, body=SCRIPT)
    Attempt.objects.filter(pk=attempt.pk).update(
        request_headers={"Authorization": "Bearer s3cr3t", "webhook-signature": "v1,abc", "X-Team": "billing"}
    )
    body = client_a.get(reverse("admin:deliveries_delivery_change", args=[delivery.pk])).content.decode()
    assert SCRIPT not in body
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in body  # payload and response body
    assert body.count("&lt;script&gt;") >= 2
    assert "&quot;note&quot;: " in body  # pretty-printed JSON
    assert "s3cr3t" not in body and "Authorization: [redacted]" in body
    assert "webhook-signature: v1,[redacted]" in body and "X-Team: billing" in body
    assert "42 ms" in body and "HTTP 500" in body


def test_list_columns_and_filters(client_a: Client, a: History) -> None:
    url = reverse("admin:deliveries_delivery_changelist")
    response = client_a.get(url)
    assert {d.pk for d in response.context["cl"].result_list} == {a.delivered.pk, a.dead.pk}
    assert a.message.uid in response.content.decode()
    dead = client_a.get(url, {"status__exact": "dead"})
    assert [d.pk for d in dead.context["cl"].result_list] == [a.dead.pk]
    by_endpoint = client_a.get(url, {"endpoint": a.endpoint.pk})
    assert len(by_endpoint.context["cl"].result_list) == 2
    by_type = client_a.get(url, {"event_type__id__exact": a.delivered.event_type_id})
    assert len(by_type.context["cl"].result_list) == 2
    today = client_a.get(
        url, {"created_at__gte": "2000-01-01 00:00:00+00:00", "created_at__lt": "2000-01-02 00:00:00+00:00"}
    )
    assert list(today.context["cl"].result_list) == []


@pytest.mark.parametrize("term", ["message", "idempotency", "delivery"])
def test_search_by_ids(client_a: Client, a: History, term: str) -> None:
    value = {"message": a.message.uid, "idempotency": "acme-order-1", "delivery": a.delivered.uid}[term]
    response = client_a.get(reverse("admin:deliveries_delivery_changelist"), {"q": value})
    assert [d.pk for d in response.context["cl"].result_list] == [a.delivered.pk]


def test_replay_button(client_a: Client, a: History) -> None:
    page = client_a.get(reverse("admin:deliveries_delivery_change", args=[a.dead.pk])).content.decode()
    assert 'id="hp-replay"' in page
    response = client_a.post(reverse("admin:deliveries_delivery_replay", args=[a.dead.pk]), follow=True)
    assert "queued for replay" in " ".join(str(m) for m in response.context["messages"])
    a.dead.refresh_from_db()
    assert a.dead.status == Delivery.Status.PENDING and a.dead.replay_count == 1
    # A second replay while pending is refused with a message, not an error page.
    again = client_a.post(reverse("admin:deliveries_delivery_replay", args=[a.dead.pk]), follow=True)
    assert "already pending" in " ".join(str(m) for m in again.context["messages"])


def test_replay_requires_post(client_a: Client, a: History) -> None:
    assert client_a.get(reverse("admin:deliveries_delivery_replay", args=[a.dead.pk])).status_code == 405


def test_replay_action(client_a: Client, a: History) -> None:
    response = client_a.post(
        reverse("admin:deliveries_delivery_changelist"),
        {"action": "replay_selected", "_selected_action": [a.dead.pk, a.delivered.pk], "index": "0"},
        follow=True,
    )
    assert "2 deliveries queued for replay" in " ".join(str(m) for m in response.context["messages"])
    assert (
        Delivery.objects.filter(pk__in=[a.dead.pk, a.delivered.pk], status=Delivery.Status.PENDING).count()
        == 2
    )


def test_dead_letters_list_replay_and_discard(client_a: Client, a: History, event_type: EventType) -> None:
    other_dead = make_delivery(a.tenant, a.endpoint, event_type, status=Delivery.Status.DEAD)
    url = reverse("admin:deliveries_deadletter_changelist")
    listed = client_a.get(url)
    assert {d.pk for d in listed.context["cl"].result_list} == {a.dead.pk, other_dead.pk}

    client_a.post(url, {"action": "replay_selected", "_selected_action": [a.dead.pk], "index": "0"})
    a.dead.refresh_from_db()
    assert a.dead.status == Delivery.Status.PENDING

    confirm = client_a.post(
        url, {"action": "discard_selected", "_selected_action": [other_dead.pk], "index": "0"}
    )
    assert confirm.status_code == 200 and "Discard 1 dead letter?" in confirm.content.decode()
    assert Delivery.objects.filter(pk=other_dead.pk).exists()
    done = client_a.post(
        url,
        {"action": "discard_selected", "_selected_action": [other_dead.pk], "index": "0", "confirm": "yes"},
        follow=True,
    )
    assert "1 dead letter(s) discarded" in " ".join(str(m) for m in done.context["messages"])
    assert not Delivery.objects.filter(pk=other_dead.pk).exists()
    assert other_dead.message.__class__.objects.filter(pk=other_dead.message_id).exists()  # the message stays


def test_dead_letter_page_buttons(client_a: Client, a: History) -> None:
    page = client_a.get(reverse("admin:deliveries_deadletter_change", args=[a.dead.pk])).content.decode()
    assert 'id="hp-replay"' in page and 'id="hp-discard"' in page
    response = client_a.post(reverse("admin:deliveries_deadletter_discard", args=[a.dead.pk]))
    assert response.status_code == 302
    assert not Delivery.objects.filter(pk=a.dead.pk).exists()


def test_discard_spares_a_replayed_letter(client_a: Client, a: History) -> None:
    from deliveries.dead_letters import dead_letters_discard
    from deliveries.replay import delivery_replay

    delivery_replay(delivery=a.dead)
    assert dead_letters_discard(tenant=a.tenant, deliveries=[a.dead]) == 0
    assert Delivery.objects.filter(pk=a.dead.pk).exists()


def test_message_page_lists_its_deliveries(client_a: Client, a: History) -> None:
    page = client_a.get(reverse("admin:deliveries_message_change", args=[a.message.pk])).content.decode()
    assert a.delivered.uid in page and "&quot;n&quot;: 1" in page


def test_history_is_read_only(client_a: Client, a: History) -> None:
    url = reverse("admin:deliveries_delivery_change", args=[a.dead.pk])
    assert client_a.post(url, {"status": "succeeded"}).status_code == 403
    a.dead.refresh_from_db()
    assert a.dead.status == Delivery.Status.DEAD
    assert client_a.get(reverse("admin:deliveries_delivery_add")).status_code == 403


@pytest.mark.parametrize(
    "prefix", ["deliveries_delivery", "deliveries_deadletter", "deliveries_message", "deliveries_attempt"]
)
def test_list_queries_do_not_grow_with_rows(
    client_a: Client,
    a: History,
    event_type: EventType,
    prefix: str,
    django_assert_max_num_queries: Callable[..., Any],
) -> None:
    """No N+1: a full page of 50 rows costs the same queries as two rows."""
    url = reverse(f"admin:{prefix}_changelist")
    with django_assert_max_num_queries(20) as few:
        client_a.get(url)
    for _ in range(60):
        d = make_delivery(a.tenant, a.endpoint, event_type, status=Delivery.Status.DEAD)
        make_attempt(d, status=500)
    with django_assert_max_num_queries(20) as many:
        response = client_a.get(url)
    assert len(response.context["cl"].result_list) == 50
    assert len(many.captured_queries) == len(few.captured_queries)


def test_detail_queries_are_bounded(
    client_a: Client, a: History, django_assert_max_num_queries: Callable[..., Any]
) -> None:
    for n in range(2, 10):
        make_attempt(a.dead, number=n, status=500)
    with django_assert_max_num_queries(16):
        assert client_a.get(reverse("admin:deliveries_delivery_change", args=[a.dead.pk])).status_code == 200
