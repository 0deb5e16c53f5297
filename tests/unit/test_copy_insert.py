"""``copy_insert``: the attempts of a batch written by COPY read back exactly as bulk_create's.

Real PostgreSQL: the values that COPY's text format must escape (tabs, new
lines, backslashes, NUL-free unicode, JSON, NULLs) go in and come back unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import IntegrityError, transaction

from deliveries.copy_insert import copy_insert
from deliveries.models import Attempt
from tests.factories import DeliveryFactory

pytestmark = pytest.mark.django_db

_FIELDS = [f.attname for f in Attempt._meta.local_concrete_fields if not f.primary_key]


def _attempts(delivery, count: int) -> list[Attempt]:  # type: ignore[no-untyped-def]
    return [
        Attempt(
            delivery=delivery,
            number=n + 1,
            started_at=datetime(2026, 11, 23, 12, 0, n, 123456, tzinfo=UTC),
            duration_ms=n or None,
            request_headers={"webhook-id": "msg_1", "x-tab": "a\tb", "quote": '"\\'},
            response_status=None if n % 2 else 200,
            response_headers={"content-type": "text/plain; charset=utf-8", "ünï": "cödé"},
            response_body="line 1\nline 2\r\n\ttabbed \\N not null \\ backslash ✓",
            error_class="" if n % 2 == 0 else "Timeout",
            error_message="",
        )
        for n in range(count)
    ]


def test_rows_written_by_copy_read_back_as_they_were_given():
    delivery = DeliveryFactory()
    given = _attempts(delivery, 4)

    copy_insert(given)

    stored = list(Attempt.objects.filter(delivery=delivery).order_by("number"))
    assert [[getattr(a, f) for f in _FIELDS] for a in stored] == [
        [getattr(a, f) for f in _FIELDS] for a in given
    ]
    assert all(a.uid.startswith("att_") for a in stored)
    assert len({a.uid for a in stored}) == 4


def test_copy_insert_refuses_rows_that_already_exist():
    delivery = DeliveryFactory()
    [saved] = _attempts(delivery, 1)
    saved.save()

    with pytest.raises(AssertionError):
        copy_insert([saved])


def test_nothing_to_write_is_no_statement(django_assert_num_queries):  # type: ignore[no-untyped-def]
    with django_assert_num_queries(0):
        copy_insert([])


def test_a_broken_constraint_is_djangos_integrity_error():
    delivery = DeliveryFactory()
    first, second = _attempts(delivery, 2)
    second.number = first.number

    with pytest.raises(IntegrityError), transaction.atomic():
        copy_insert([first, second])
    assert not Attempt.objects.filter(delivery=delivery).exists()
