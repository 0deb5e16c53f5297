"""The admin over a large history: 100,000 deliveries of one tenant (plus another
tenant's 10,000) render with a bounded number of queries and no full COUNT(*).

Render times are measured and written to ``test-artifacts/admin-large-history.json``
for the record; they are not asserted (speed is measured by ``make bench``,
never by timed tests). The rows are bulk-inserted once per module inside one
transaction that is rolled back at the end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from deliveries.models import Attempt, Delivery, Message
from tests.factories import EndpointFactory, EventTypeFactory, TenantFactory
from webhooks.models import Endpoint, EventType, Tenant
from webhooks.tenant_users import tenant_user_create

pytestmark = [pytest.mark.perf, pytest.mark.django_db]

ROWS = 100_000
OTHER_ROWS = 10_000
ARTIFACT = Path(__file__).resolve().parents[2] / "test-artifacts" / "admin-large-history.json"
# Session, user, memberships, permissions, bounded count, planner estimate,
# the page, filter choices, ... : a constant, whatever the number of rows.
MAX_QUERIES = 16
STATUSES = ["succeeded"] * 7 + ["failed", "dead", "skipped"]


def _insert_series(model: type[Model], count: int, exprs: dict[str, str], params: dict[str, Any]) -> None:
    """``INSERT … SELECT … FROM generate_series(0, count - 1) AS n`` for ``model``.

    ``exprs`` gives SQL for the columns that vary (``n`` is the row number);
    every other column gets its model default, so a column added to the model
    later does not break this seeding (a required one without a default does,
    loudly).
    """
    columns, values, args = [], [], dict(params)
    for field in model._meta.concrete_fields:
        if field.primary_key and field.column not in exprs:
            continue
        columns.append(connection.ops.quote_name(field.column))
        if field.column in exprs:
            values.append(exprs[field.column])
        elif field.has_default() or (field.empty_strings_allowed and not field.null):
            args[field.column] = field.get_db_prep_save(field.get_default(), connection)
            values.append(f"%({field.column})s")
        elif field.null:
            values.append("NULL")
        else:
            raise AssertionError(f"no value for the required column {model.__name__}.{field.column}")
    sql = (
        f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({', '.join(columns)}) "
        f"SELECT {', '.join(values)} FROM generate_series(0, {int(count) - 1}) AS n"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, args)


def _seed(
    tenant: Tenant, endpoints: list[Endpoint], event_types: list[EventType], count: int, tag: str
) -> None:
    """``count`` messages with one delivery each, one every 0.8 s back from now (~22 h)."""
    ids = {"tenant": tenant.pk, "tag": tag, "now": timezone.now()}
    event_type_ids = "ARRAY[" + ",".join(str(et.pk) for et in event_types) + "]"
    endpoint_ids = "ARRAY[" + ",".join(str(ep.pk) for ep in endpoints) + "]"
    statuses = "ARRAY[" + ",".join(f"'{s}'" for s in STATUSES) + "]"
    created = "%(now)s::timestamptz - n * interval '800 milliseconds'"
    _insert_series(
        Message,
        count,
        {
            "uid": "'msg_' || %(tag)s || '_' || n",
            "tenant_id": "%(tenant)s",
            "event_type_id": f"({event_type_ids})[1 + mod(n, {len(event_types)})]",
            "payload": "jsonb_build_object('n', n, 'note', repeat('x', 64))",
            "idempotency_key": "%(tag)s || '-key-' || n",
            "created_at": created,
        },
        ids,
    )
    _insert_series(
        Delivery,
        count,
        {
            "uid": "'dlv_' || %(tag)s || '_' || n",
            "tenant_id": "%(tenant)s",
            "message_id": "(SELECT m.id FROM deliveries_message m WHERE m.tenant_id = %(tenant)s "
            "AND m.uid = 'msg_' || %(tag)s || '_' || n)",
            "endpoint_id": f"({endpoint_ids})[1 + mod(n, {len(endpoints)})]",
            "event_type_id": f"({event_type_ids})[1 + mod(n, {len(event_types)})]",
            "status": f"({statuses})[1 + mod(n, {len(STATUSES)})]",
            "attempt_count": "1",
            "last_status_code": "200",
            "created_at": created,
            "updated_at": created,
            "finished_at": created,
        },
        ids,
    )


@pytest.fixture(scope="module")
def big(django_db_setup: Any, django_db_blocker: Any) -> Iterator[dict[str, Any]]:
    """The seeded world; everything is rolled back when the module is done."""
    with django_db_blocker.unblock():
        connection.set_autocommit(False)
        try:
            started = time.monotonic()
            event_types = [EventTypeFactory.create(name=f"perf.event{i}") for i in range(5)]
            acme = TenantFactory.create(uid="perf-acme")
            other = TenantFactory.create(uid="perf-other")
            endpoints = [
                EndpointFactory.create(tenant=acme, url=f"https://perf{i}.example.com/") for i in range(4)
            ]
            _seed(acme, endpoints, event_types, ROWS, "a")
            _seed(other, [EndpointFactory.create(tenant=other)], event_types, OTHER_ROWS, "b")
            sample = Delivery.objects.get(uid="dlv_a_12345")
            Attempt.objects.create(delivery=sample, number=1, response_status=200, duration_ms=12)
            user = tenant_user_create(username="perf-user", tenants=[acme], password="pw-123456!").user
            operator = get_user_model().objects.create_superuser("perf-op", "op@example.com", "pw-123456!")
            with connection.cursor() as cursor:
                cursor.execute(
                    "ANALYZE deliveries_delivery; ANALYZE deliveries_message; ANALYZE deliveries_attempt"
                )
            seeded = time.monotonic() - started
            yield {
                "tenant": acme,
                "endpoints": endpoints,
                "event_types": event_types,
                "user": user,
                "operator": operator,
                "sample": sample,
                "seed_seconds": seeded,
            }
        finally:
            connection.rollback()
            connection.set_autocommit(True)


@pytest.fixture(scope="module")
def timings() -> Iterator[dict[str, Any]]:
    results: dict[str, Any] = {}
    yield results
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(json.dumps(results, indent=2) + "\n")


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _measure(
    client: Client,
    url: str,
    params: dict[str, Any],
    assert_max: Callable[..., Any],
    timings: dict[str, Any],
    name: str,
) -> Any:
    client.get(url, params)  # warm: templates compiled, connection open
    runs = []
    for _ in range(2):  # the best of two: other work on the machine only ever adds time
        with assert_max(MAX_QUERIES) as queries:
            started = time.perf_counter()
            response = client.get(url, params)
            elapsed = time.perf_counter() - started
        assert response.status_code == 200, name
        runs.append((elapsed, list(queries.captured_queries), response))
    elapsed, captured, response = min(runs, key=lambda run: run[0])
    counts = [q["sql"] for q in captured if 'COUNT(*) AS "__count" FROM "deliveries_' in q["sql"]]
    # Every count over the history is bounded by a LIMIT: no full COUNT(*).
    assert all("LIMIT" in sql.upper() for sql in counts), counts
    slowest = max(captured, key=lambda q: float(q["time"]))
    timings[name] = {
        "ms": round(elapsed * 1000, 1),
        "queries": len(captured),
        "sql_ms": round(sum(float(q["time"]) for q in captured) * 1000, 1),
        "slowest_sql": slowest["sql"][:300],
        "slowest_sql_ms": round(float(slowest["time"]) * 1000, 1),
    }
    return response


def test_delivery_list_over_100k_rows(
    big: dict[str, Any], timings: dict[str, Any], django_assert_max_num_queries: Callable[..., Any]
) -> None:
    client = _client(big["user"])
    url = reverse("admin:deliveries_delivery_changelist")
    timings["rows"] = {
        "tenant": ROWS,
        "other tenant": OTHER_ROWS,
        "seed_seconds": round(big["seed_seconds"], 1),
    }
    response = _measure(client, url, {}, django_assert_max_num_queries, timings, "delivery list, first page")
    cl = response.context["cl"]
    assert cl.paginator.is_estimate
    assert 0.5 * ROWS <= cl.result_count <= 2 * ROWS  # the planner's estimate, not OTHER_ROWS + ROWS
    assert len(cl.result_list) == 50
    assert all(d.tenant_id == big["tenant"].pk for d in cl.result_list)
    body = response.content.decode()
    assert "about " in body and "dlv_b_" not in body

    page = _measure(
        client, url, {"p": "200"}, django_assert_max_num_queries, timings, "delivery list, page 200"
    )
    assert len(page.context["cl"].result_list) == 50

    dead = _measure(
        client, url, {"status__exact": "dead"}, django_assert_max_num_queries, timings, "status=dead"
    )
    assert {d.status for d in dead.context["cl"].result_list} == {"dead"}

    endpoint = big["endpoints"][1]
    by_endpoint = _measure(
        client, url, {"endpoint": endpoint.pk}, django_assert_max_num_queries, timings, "filter by endpoint"
    )
    assert {d.endpoint_id for d in by_endpoint.context["cl"].result_list} == {endpoint.pk}

    event_type = big["event_types"][2]
    by_type = _measure(
        client,
        url,
        {"event_type__id__exact": event_type.pk},
        django_assert_max_num_queries,
        timings,
        "filter by event type",
    )
    assert {d.event_type_id for d in by_type.context["cl"].result_list} == {event_type.pk}

    since = (timezone.now() - timedelta(days=7)).date().isoformat()
    _measure(
        client,
        url,
        {"created_at__gte": f"{since} 00:00:00+00:00"},
        django_assert_max_num_queries,
        timings,
        "created in the last 7 days",
    )

    for name, term in (
        ("search by webhook-id", "msg_a_4242"),
        ("search by idempotency key", "a-key-4242"),
        ("search by delivery id", "dlv_a_4242"),
    ):
        found = _measure(client, url, {"q": term}, django_assert_max_num_queries, timings, name)
        assert [d.uid for d in found.context["cl"].result_list] == ["dlv_a_4242"]
    foreign = client.get(url, {"q": "msg_b_42"})
    assert list(foreign.context["cl"].result_list) == []


def test_other_lists_and_pages_over_100k_rows(
    big: dict[str, Any], timings: dict[str, Any], django_assert_max_num_queries: Callable[..., Any]
) -> None:
    client = _client(big["user"])
    for name, url in (
        ("dead-letter list", reverse("admin:deliveries_deadletter_changelist")),
        ("message list", reverse("admin:deliveries_message_changelist")),
        ("attempt list", reverse("admin:deliveries_attempt_changelist")),
        ("endpoint list (24 h health)", reverse("admin:webhooks_endpoint_changelist")),
        ("tenant dashboard", reverse("admin:webhooks_tenant_dashboard", args=[big["tenant"].pk])),
        ("delivery detail", reverse("admin:deliveries_delivery_change", args=[big["sample"].pk])),
    ):
        _measure(client, url, {}, django_assert_max_num_queries, timings, name)
    operator = _client(big["operator"])
    _measure(
        operator,
        reverse("admin:deliveries_delivery_changelist"),
        {},
        django_assert_max_num_queries,
        timings,
        "delivery list as operator (all tenants)",
    )
