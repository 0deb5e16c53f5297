"""``copy_insert``: rows written by COPY read back exactly as they were given.

Real PostgreSQL: the values that COPY's text format must escape (tabs, new
lines, backslashes, NUL-free unicode, JSON, NULLs) go in and come back unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from deliveries.copy_insert import COPY_MIN_ROWS, copy_insert
from deliveries.models import Attempt, Delivery
from tests.factories import DeliveryFactory, EndpointFactory, MessageFactory

pytestmark = pytest.mark.django_db


def _attempts(delivery, count: int) -> list[dict[str, Any]]:
    return [
        {
            "delivery_id": delivery.pk,
            "number": n + 1,
            "started_at": datetime(2026, 11, 23, 12, 0, n, 123456, tzinfo=UTC),
            "duration_ms": n or None,
            "request_headers": {"webhook-id": "msg_1", "x-tab": "a\tb", "quote": '"\\'},
            "response_status": None if n % 2 else 200,
            "response_headers": {"content-type": "text/plain; charset=utf-8", "ünï": "cödé"},
            "response_body": "line 1\nline 2\r\n\ttabbed \\N not null \\ backslash ✓",
            "error_class": "" if n % 2 == 0 else "Timeout",
            "error_message": "",
        }
        for n in range(count)
    ]


def test_rows_written_by_copy_read_back_as_they_were_given():
    delivery = DeliveryFactory.create()
    given = _attempts(delivery, COPY_MIN_ROWS)  # enough rows to go by COPY

    copy_insert(Attempt, given)

    stored = list(Attempt.objects.filter(delivery=delivery).order_by("number"))
    assert [{name: getattr(a, name) for name in given[0]} for a in stored] == given
    # What a row leaves out takes the field's default, a callable default once per row.
    assert [a.trigger for a in stored] == [Attempt.Trigger.SCHEDULED] * COPY_MIN_ROWS
    assert all(a.uid.startswith("att_") for a in stored)
    assert len({a.uid for a in stored}) == COPY_MIN_ROWS


def test_an_unknown_field_is_refused_before_anything_is_written():
    delivery = DeliveryFactory.create()
    rows = _attempts(delivery, 2)
    rows[1]["delivery"] = delivery  # the relation's name, not its attname

    with pytest.raises(ValueError, match="delivery"):
        copy_insert(Attempt, rows)
    assert not Attempt.objects.filter(delivery=delivery).exists()


def test_nothing_to_write_is_no_statement(django_assert_num_queries):
    with django_assert_num_queries(0):
        copy_insert(Attempt, [])


def test_a_broken_constraint_is_djangos_integrity_error():
    delivery = DeliveryFactory.create()
    rows = _attempts(delivery, COPY_MIN_ROWS)
    rows[-1]["number"] = rows[0]["number"]

    with pytest.raises(IntegrityError), transaction.atomic():
        copy_insert(Attempt, rows)
    assert not Attempt.objects.filter(delivery=delivery).exists()


@pytest.mark.parametrize("count", [COPY_MIN_ROWS - 1, COPY_MIN_ROWS, 30])
def test_the_new_ids_come_back_in_the_order_of_the_rows(count):
    delivery = DeliveryFactory.create()
    rows = _attempts(delivery, count)

    ids = copy_insert(Attempt, rows, return_ids=True)

    assert len(set(ids)) == count
    stored = Attempt.objects.in_bulk(ids)
    assert [stored[pk].number for pk in ids] == [row["number"] for row in rows]
    # and the sequence moved past them: the next ordinary insert does not collide
    later = Attempt.objects.create(delivery=delivery, number=count + 1)
    assert later.pk not in ids


def test_an_auto_now_field_a_row_leaves_out_is_now():
    message = MessageFactory.create()
    before = timezone.now()
    rows = [
        {
            "tenant_id": message.tenant_id,
            "message_id": message.pk,
            "endpoint_id": EndpointFactory.create(tenant=message.tenant).pk,
            "event_type_id": message.event_type_id,
        }
        for _ in range(COPY_MIN_ROWS)
    ]

    ids = copy_insert(Delivery, rows, return_ids=True)

    stored = list(Delivery.objects.filter(pk__in=ids))
    assert len(stored) == COPY_MIN_ROWS
    assert all(d.updated_at >= before and d.created_at >= before for d in stored)
    assert all(d.uid.startswith("dlv_") for d in stored)
