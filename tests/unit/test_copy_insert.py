"""``copy_insert``: the attempts of a batch written by COPY read back exactly as they were given.

Real PostgreSQL: the values that COPY's text format must escape (tabs, new
lines, backslashes, NUL-free unicode, JSON, NULLs) go in and come back unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import IntegrityError, transaction

from deliveries.copy_insert import copy_insert
from deliveries.models import Attempt
from tests.factories import DeliveryFactory

pytestmark = pytest.mark.django_db


def _attempts(delivery, count: int) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
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
    delivery = DeliveryFactory()
    given = _attempts(delivery, 4)

    copy_insert(Attempt, given)

    stored = list(Attempt.objects.filter(delivery=delivery).order_by("number"))
    assert [{name: getattr(a, name) for name in given[0]} for a in stored] == given
    # What a row leaves out takes the field's default, a callable default once per row.
    assert [a.trigger for a in stored] == [Attempt.Trigger.SCHEDULED] * 4
    assert all(a.uid.startswith("att_") for a in stored)
    assert len({a.uid for a in stored}) == 4


def test_an_unknown_field_is_refused_before_anything_is_written():
    delivery = DeliveryFactory()
    rows = _attempts(delivery, 2)
    rows[1]["delivery"] = delivery  # the relation's name, not its attname

    with pytest.raises(ValueError, match="delivery"):
        copy_insert(Attempt, rows)
    assert not Attempt.objects.filter(delivery=delivery).exists()


def test_nothing_to_write_is_no_statement(django_assert_num_queries):  # type: ignore[no-untyped-def]
    with django_assert_num_queries(0):
        copy_insert(Attempt, [])


def test_a_broken_constraint_is_djangos_integrity_error():
    delivery = DeliveryFactory()
    first, second = _attempts(delivery, 2)
    second["number"] = first["number"]

    with pytest.raises(IntegrityError), transaction.atomic():
        copy_insert(Attempt, [first, second])
    assert not Attempt.objects.filter(delivery=delivery).exists()
