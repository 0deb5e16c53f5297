"""Retention purges old history in batches and keeps what must stay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from deliveries.models import Attempt, Delivery, Message
from deliveries.retention import purge_expired
from tests.factories import DeliveryFactory, EndpointFactory, MessageFactory, TenantFactory

pytestmark = pytest.mark.django_db


def _delivery(tenant, endpoint, *, age_days: float, status: str, attempts: int = 1) -> Delivery:
    created = timezone.now() - timedelta(days=age_days)
    message = MessageFactory.create(tenant=tenant, created_at=created)
    delivery = DeliveryFactory.create(message=message, endpoint=endpoint, status=status, created_at=created)
    for number in range(1, attempts + 1):
        Attempt.objects.create(delivery=delivery, number=number, started_at=created)
    return delivery


def test_old_history_is_purged_and_recent_and_dead_letters_are_kept(settings):
    settings.HOOKPOST_DEAD_LETTER_RETENTION_DAYS = 90
    tenant = TenantFactory.create(retention_days=30)
    endpoint = EndpointFactory.create(tenant=tenant)
    old_ok = _delivery(tenant, endpoint, age_days=31, status="succeeded", attempts=2)
    old_skipped = _delivery(tenant, endpoint, age_days=40, status="skipped", attempts=0)
    recent_ok = _delivery(tenant, endpoint, age_days=29, status="succeeded")
    old_dead = _delivery(tenant, endpoint, age_days=60, status="dead", attempts=3)
    ancient_dead = _delivery(tenant, endpoint, age_days=91, status="dead")
    old_failed = _delivery(tenant, endpoint, age_days=45, status="failed")  # still being retried

    report = purge_expired(batch_size=1)  # one row per batch: the loop must go on

    remaining = set(Delivery.objects.values_list("pk", flat=True))
    assert remaining == {recent_ok.pk, old_dead.pk, old_failed.pk}
    assert report.deliveries == 3 and report.attempts == 3
    assert not Message.objects.filter(
        pk__in=[old_ok.message_id, old_skipped.message_id, ancient_dead.message_id]
    ).exists()
    assert Message.objects.filter(pk=old_dead.message_id).exists()
    assert Attempt.objects.filter(delivery=old_dead).count() == 3


def test_each_tenant_keeps_its_own_retention():
    short = TenantFactory.create(retention_days=7)
    long = TenantFactory.create(retention_days=365)
    short_old = _delivery(short, EndpointFactory.create(tenant=short), age_days=10, status="succeeded")
    long_old = _delivery(long, EndpointFactory.create(tenant=long), age_days=100, status="succeeded")

    purge_expired()

    assert not Delivery.objects.filter(pk=short_old.pk).exists()
    assert Delivery.objects.filter(pk=long_old.pk).exists()


def test_message_with_a_delivery_left_is_kept():
    tenant = TenantFactory.create(retention_days=30)
    message = MessageFactory.create(tenant=tenant, created_at=timezone.now() - timedelta(days=50))
    kept = DeliveryFactory.create(
        message=message, endpoint=EndpointFactory.create(tenant=tenant), status="dead"
    )
    purged = DeliveryFactory.create(
        message=message, endpoint=EndpointFactory.create(tenant=tenant), status="succeeded"
    )
    Delivery.objects.filter(pk__in=[kept.pk, purged.pk]).update(created_at=message.created_at)

    purge_expired()

    assert Message.objects.filter(pk=message.pk).exists()
    assert list(Delivery.objects.values_list("pk", flat=True)) == [kept.pk]
