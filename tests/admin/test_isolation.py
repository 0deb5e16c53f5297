"""Tenant isolation in the admin: tenant B's user never sees or touches tenant A.

For every admin model: A's object URLs are 404 for B (not 403, not a
redirect), B's lists, filters, searches and autocompletes hold none of A's
rows, and actions posted with A's ids (forged: they were never on B's page)
change nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from deliveries.models import Attempt, Delivery
from tests.admin.conftest import History
from webhooks.models import ApiKey, Endpoint, EndpointSecret, Membership
from webhooks.services import api_key_create

pytestmark = pytest.mark.django_db

# (admin url name prefix, History attribute of the object, its changelist holds it)
MODELS = [
    ("webhooks_endpoint", "endpoint"),
    ("webhooks_tenant", "tenant"),
    ("deliveries_message", "message"),
    ("deliveries_delivery", "delivered"),
    ("deliveries_deadletter", "dead"),
    ("deliveries_attempt", "attempt"),
]


def _obj(history: History, attr: str) -> Any:
    return getattr(history, attr)


@pytest.mark.parametrize("prefix,attr", MODELS)
@pytest.mark.parametrize("view", ["change", "delete", "history"])
def test_foreign_object_pages_are_404(
    client_b: Client, a: History, prefix: str, attr: str, view: str
) -> None:
    url = reverse(f"admin:{prefix}_{view}", args=[_obj(a, attr).pk])
    assert client_b.get(url).status_code == 404
    assert client_b.post(url, {"post": "yes"}).status_code == 404


@pytest.mark.parametrize("prefix,attr", MODELS)
def test_own_object_pages_open(client_b: Client, b: History, prefix: str, attr: str) -> None:
    """The 404s above are about ownership, not about the pages being broken."""
    for view in ("change", "history"):
        assert client_b.get(reverse(f"admin:{prefix}_{view}", args=[_obj(b, attr).pk])).status_code == 200


@pytest.mark.parametrize(
    "name,attr,method",
    [
        ("webhooks_endpoint_secret", "endpoint", "get"),
        ("webhooks_endpoint_secret", "endpoint", "post"),
        ("webhooks_endpoint_test_event", "endpoint", "post"),
        ("webhooks_endpoint_recover", "endpoint", "get"),
        ("webhooks_endpoint_recover", "endpoint", "post"),
        ("deliveries_delivery_replay", "dead", "post"),
        ("deliveries_deadletter_replay", "dead", "post"),
        ("deliveries_deadletter_discard", "dead", "post"),
        ("webhooks_tenant_dashboard", "tenant", "get"),
    ],
)
def test_foreign_custom_views_are_404_and_change_nothing(
    client_b: Client, a: History, name: str, attr: str, method: str
) -> None:
    secrets_before = list(EndpointSecret.objects.filter(endpoint=a.endpoint).values_list("secret", flat=True))
    url = reverse(f"admin:{name}", args=[_obj(a, attr).pk])
    data = {"since": "2000-01-01T00:00", "statuses": ["dead"], "grace_hours": "1"}
    response = getattr(client_b, method)(url, data)
    assert response.status_code == 404
    a.dead.refresh_from_db()
    assert a.dead.status == Delivery.Status.DEAD and a.dead.replay_count == 0
    assert (
        list(EndpointSecret.objects.filter(endpoint=a.endpoint).values_list("secret", flat=True))
        == secrets_before
    )
    assert Delivery.objects.filter(tenant=a.tenant).count() == 2


@pytest.mark.parametrize(
    "prefix",
    [
        "webhooks_endpoint",
        "webhooks_tenant",
        "deliveries_message",
        "deliveries_delivery",
        "deliveries_deadletter",
        "deliveries_attempt",
    ],
)
def test_lists_hold_only_own_rows(client_b: Client, a: History, b: History, prefix: str) -> None:
    response = client_b.get(reverse(f"admin:{prefix}_changelist"))
    assert response.status_code == 200
    rows = list(response.context["cl"].result_list)
    assert rows, "B's own rows are listed"
    assert all(_tenant_id(row) == b.tenant.pk for row in rows)
    body = response.content.decode()
    for marker in (a.tenant.uid, a.endpoint.url, a.message.uid, a.delivered.uid, a.dead.uid):
        assert marker not in body


def _tenant_id(row: Any) -> int:
    if isinstance(row, Attempt):
        return int(row.delivery.tenant_id)
    return int(row.pk if row._meta.model_name == "tenant" else row.tenant_id)


def test_filter_choices_hold_only_own_endpoints_and_tenants(client_b: Client, a: History, b: History) -> None:
    for prefix in ("deliveries_delivery", "deliveries_deadletter", "deliveries_attempt"):
        response = client_b.get(reverse(f"admin:{prefix}_changelist"))
        specs = {spec.title: spec for spec in response.context["cl"].filter_specs}
        endpoint_choices = [label for _, label in specs["endpoint"].lookup_choices]
        assert endpoint_choices == [b.endpoint.url]
        assert "tenant" not in specs  # one tenant: no tenant filter at all
        assert a.endpoint.url not in response.content.decode()


def test_forged_filter_values_show_nothing_foreign(client_b: Client, a: History, b: History) -> None:
    for prefix, param in (
        ("deliveries_delivery", "endpoint"),
        ("deliveries_deadletter", "endpoint"),
        ("deliveries_attempt", "endpoint"),
    ):
        response = client_b.get(reverse(f"admin:{prefix}_changelist"), {param: a.endpoint.pk})
        assert response.status_code in (200, 302)
        if response.status_code == 200:
            assert list(response.context["cl"].result_list) == []


def test_multi_tenant_user_tenant_filter_lists_only_memberships(
    login: Callable[..., Client], a: History, b: History, event_type: Any
) -> None:
    from tests.admin.conftest import build_history

    c = build_history("initech", event_type)
    client = login(b.tenant, c.tenant)
    response = client.get(reverse("admin:deliveries_delivery_changelist"))
    specs = {spec.title: spec for spec in response.context["cl"].filter_specs}
    assert sorted(label for _, label in specs["tenant"].lookup_choices) == ["globex", "initech"]
    rows = list(response.context["cl"].result_list)
    assert {r.tenant_id for r in rows} == {b.tenant.pk, c.tenant.pk}
    forged = client.get(reverse("admin:deliveries_delivery_changelist"), {"tenant": a.tenant.pk})
    assert list(forged.context["cl"].result_list) == []


@pytest.mark.parametrize(
    "model_name,field_name,foreign",
    [
        ("delivery", "endpoint", lambda h: h.endpoint),
        ("delivery", "tenant", lambda h: h.tenant),
        ("delivery", "message", lambda h: h.message),
        ("attempt", "delivery", lambda h: h.delivered),
        ("endpoint", "tenant", lambda h: h.tenant),
    ],
)
def test_autocomplete_holds_only_own_rows(
    client_b: Client,
    a: History,
    b: History,
    model_name: str,
    field_name: str,
    foreign: Callable[[History], Any],
) -> None:
    app = "webhooks" if model_name == "endpoint" else "deliveries"
    params = {"app_label": app, "model_name": model_name, "field_name": field_name}
    for term in ("", foreign(a).uid if hasattr(foreign(a), "uid") else "acme"):
        response = client_b.get(reverse("admin:autocomplete"), {**params, "term": term})
        assert response.status_code == 200, response.content
        ids = {int(r["id"]) for r in response.json()["results"]}
        assert foreign(a).pk not in ids
    own = client_b.get(reverse("admin:autocomplete"), {**params, "term": ""}).json()["results"]
    assert foreign(b).pk in {int(r["id"]) for r in own}


def test_search_by_foreign_ids_finds_nothing(client_b: Client, a: History) -> None:
    for prefix in (
        "deliveries_delivery",
        "deliveries_message",
        "deliveries_attempt",
        "deliveries_deadletter",
    ):
        for term in (a.message.uid, "acme-order-1", a.delivered.uid, a.dead.uid):
            response = client_b.get(reverse(f"admin:{prefix}_changelist"), {"q": term})
            assert list(response.context["cl"].result_list) == [], (prefix, term)


def _action(client: Client, prefix: str, action: str, ids: list[int], **extra: str) -> Any:
    return client.post(
        reverse(f"admin:{prefix}_changelist"),
        {"action": action, "_selected_action": ids, "index": "0", **extra},
    )


def test_forged_replay_action_changes_nothing(client_b: Client, a: History, b: History) -> None:
    for prefix in ("deliveries_delivery", "deliveries_deadletter"):
        response = _action(client_b, prefix, "replay_selected", [a.dead.pk, a.delivered.pk])
        assert response.status_code == 302
    for delivery in (a.dead, a.delivered):
        before = delivery.status
        delivery.refresh_from_db()
        assert delivery.status == before and delivery.replay_count == 0


def test_forged_discard_action_changes_nothing(client_b: Client, a: History) -> None:
    _action(client_b, "deliveries_deadletter", "discard_selected", [a.dead.pk], confirm="yes")
    assert Delivery.objects.filter(pk=a.dead.pk, status=Delivery.Status.DEAD).exists()


def test_forged_endpoint_actions_change_nothing(client_b: Client, a: History) -> None:
    _action(client_b, "webhooks_endpoint", "disable_selected", [a.endpoint.pk])
    _action(client_b, "webhooks_endpoint", "delete_selected", [a.endpoint.pk], post="yes")
    a.endpoint.refresh_from_db()
    assert a.endpoint.enabled


def test_mixed_selection_acts_on_own_rows_only(client_b: Client, a: History, b: History) -> None:
    _action(client_b, "deliveries_deadletter", "replay_selected", [a.dead.pk, b.dead.pk])
    a.dead.refresh_from_db()
    b.dead.refresh_from_db()
    assert a.dead.status == Delivery.Status.DEAD and a.dead.replay_count == 0
    assert b.dead.status == Delivery.Status.PENDING and b.dead.replay_count == 1


def test_endpoint_form_offers_only_managed_tenants(client_b: Client, a: History, b: History) -> None:
    response = client_b.get(reverse("admin:webhooks_endpoint_add"))
    choices = list(response.context["adminform"].form.fields["tenant"].queryset)
    assert choices == [b.tenant]
    forged = client_b.post(
        reverse("admin:webhooks_endpoint_add"),
        {"tenant": a.tenant.pk, "url": "https://example.com/x", "timeout_seconds": 15, "enabled": "on"},
    )
    assert forged.status_code == 200  # the form refuses the foreign tenant
    assert "tenant" in forged.context["adminform"].form.errors
    assert not Endpoint.objects.filter(url="https://example.com/x").exists()


def test_operator_only_models_are_404_for_tenant_users(client_b: Client, a: History) -> None:
    key, _ = api_key_create(tenant=a.tenant, name="a key")
    membership = Membership.objects.filter(tenant=a.tenant).first() or Membership.objects.first()
    for prefix, pk in (("webhooks_apikey", key.pk), ("webhooks_membership", getattr(membership, "pk", 1))):
        assert client_b.get(reverse(f"admin:{prefix}_change", args=[pk])).status_code in (403, 404)
    assert client_b.get(reverse("admin:webhooks_apikey_changelist")).status_code == 403
    assert ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).exists()


def test_staff_without_membership_sees_nothing(a: History, b: History) -> None:
    from django.contrib.auth import get_user_model

    from webhooks.tenant_users import tenant_users_group

    user = get_user_model().objects.create_user("drifter", password="pw-123456!", is_staff=True)
    user.groups.add(tenant_users_group())
    client = Client()
    client.force_login(user)
    response = client.get(reverse("admin:deliveries_delivery_changelist"))
    assert list(response.context["cl"].result_list) == []
    assert client.get(reverse("admin:deliveries_delivery_change", args=[a.delivered.pk])).status_code == 404


def test_operator_sees_every_tenant(operator: Client, a: History, b: History) -> None:
    response = operator.get(reverse("admin:deliveries_delivery_changelist"))
    assert {r.tenant_id for r in response.context["cl"].result_list} == {a.tenant.pk, b.tenant.pk}
    assert operator.get(reverse("admin:deliveries_delivery_change", args=[a.dead.pk])).status_code == 200
    assert operator.get(reverse("admin:webhooks_tenant_dashboard", args=[b.tenant.pk])).status_code == 200


def test_viewer_reads_but_cannot_act(login: Callable[..., Client], a: History) -> None:
    viewer = login(a.tenant, role=Membership.Role.VIEWER)
    assert viewer.get(reverse("admin:deliveries_delivery_change", args=[a.dead.pk])).status_code == 200
    assert viewer.post(reverse("admin:deliveries_delivery_replay", args=[a.dead.pk])).status_code == 403
    assert viewer.get(reverse("admin:webhooks_endpoint_secret", args=[a.endpoint.pk])).status_code == 403
    endpoint_page = viewer.get(
        reverse("admin:webhooks_endpoint_change", args=[a.endpoint.pk])
    ).content.decode()
    assert "Reveal or rotate" not in endpoint_page and 'id="hp-test-event"' not in endpoint_page
    response = viewer.get(reverse("admin:deliveries_deadletter_changelist"))
    assert response.context["action_form"] is None  # no action the viewer may use
    posted = viewer.post(
        reverse("admin:webhooks_endpoint_change", args=[a.endpoint.pk]),
        {"url": "https://evil.example.com/", "timeout_seconds": 15},
    )
    assert posted.status_code == 403
    a.endpoint.refresh_from_db()
    assert a.endpoint.url == "https://acme.example.com/hooks"
    _action(viewer, "deliveries_deadletter", "replay_selected", [a.dead.pk])
    a.dead.refresh_from_db()
    assert a.dead.status == Delivery.Status.DEAD
