"""Runtime domain: what was published (Message), what must reach each endpoint
(Delivery, one per message and endpoint) and every try (Attempt).

PostgreSQL is the delivery schedule: a delivery is due when its status is
pending/failed and ``next_attempt_at <= now``; the partial index below serves
exactly that query.
"""

from __future__ import annotations

from typing import ClassVar

from django.db import models
from django.db.models import Q
from django.utils import timezone

from webhooks.ids import new_id
from webhooks.models import Endpoint, EventType, Tenant


def _message_id() -> str:
    return new_id("msg")


def _delivery_id() -> str:
    return new_id("dlv")


def _attempt_id() -> str:
    return new_id("att")


class Message(models.Model):
    """An event published by an internal service for one tenant.

    ``uid`` is sent as ``webhook-id`` on every attempt and replay; the publisher
    may choose it (it is then the idempotency key), unique per tenant.
    """

    uid = models.CharField(max_length=64, default=_message_id)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="messages")
    event_type = models.ForeignKey(EventType, on_delete=models.PROTECT, related_name="messages")
    payload = models.JSONField()
    # NULL, not "", for "no key": the partial unique constraint below must
    # ignore messages without one.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    # SHA-256 of the canonical request, to refuse an idempotency key reused for
    # a different message (409) instead of silently returning the old one.
    request_hash = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "uid"], name="message_tenant_uid_uniq"),
            models.UniqueConstraint(
                fields=["tenant", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="message_tenant_idem_uniq",
            ),
        ]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="message_tenant_created")]

    def __str__(self) -> str:
        return self.uid


class Delivery(models.Model):
    """One message for one endpoint, and where it stands.

    Status moves only forward through conditional updates (see
    ``deliveries.services``): pending -> succeeded | failed -> ... -> dead.
    A replay moves a finished delivery back to pending and appends attempts;
    history is never rewritten.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed (retry scheduled)"
        DEAD = "dead", "Dead letter"
        SKIPPED = "skipped", "Skipped (endpoint disabled)"

    uid = models.CharField(max_length=40, unique=True, default=_delivery_id, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="deliveries")
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    # Copied from the message so history filters by event type use an index
    # on this table instead of a join.
    event_type = models.ForeignKey(EventType, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempt_count = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # The lease: set when the delivery is handed to a queue or claimed by a
    # worker. Only the holder of ``lease_token`` may record the outcome; an
    # expired lease (worker killed, queue flushed) lets the scheduler hand the
    # delivery out again.
    lease_token = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001  (NULL = unleased)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # How the next attempt came about (a replay is recorded as such).
    next_trigger = models.CharField(max_length=16, default="scheduled")
    # Attempts counted before the last replay: a replay starts the retry
    # schedule afresh while the attempt numbers keep counting.
    schedule_offset = models.PositiveIntegerField(default=0)
    # Exceptions in our own code while handling this delivery (poison work).
    internal_failures = models.PositiveSmallIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    replay_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["message", "endpoint"], name="delivery_message_endpoint_uniq")
        ]
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="delivery_tenant_created"),
            models.Index(fields=["endpoint", "-created_at"], name="delivery_endpoint_created"),
            models.Index(fields=["tenant", "status", "-created_at"], name="delivery_tenant_status_created"),
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status__in=["pending", "failed"]),
                name="delivery_due",
            ),
            # An endpoint's due work, for the scheduler's first-lane-only rounds (the retry
            # queue full): they look for due rows of healthy endpoints, which without it
            # meant reading each endpoint's whole history, or every other lane's due row.
            models.Index(
                fields=["endpoint", "next_attempt_at"],
                condition=Q(status__in=["pending", "failed"]),
                name="delivery_endpoint_due",
            ),
        ]

    def __str__(self) -> str:
        return self.uid


class Attempt(models.Model):
    """One HTTP request made for a delivery, and what came back."""

    class Trigger(models.TextChoices):
        SCHEDULED = "scheduled", "Scheduled"
        REPLAY = "replay", "Replay"
        TEST = "test", "Test"

    uid = models.CharField(max_length=40, unique=True, default=_attempt_id, editable=False)
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.SCHEDULED)
    started_at = models.DateTimeField(default=timezone.now)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    request_headers = models.JSONField(default=dict, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_headers = models.JSONField(default=dict, blank=True)
    response_body = models.TextField(blank=True)
    error_class = models.CharField(max_length=100, blank=True)
    error_message = models.TextField(blank=True)

    class Meta:
        ordering = ["number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="attempt_delivery_number_uniq")
        ]

    def __str__(self) -> str:
        return self.uid


class DeadLetterManager(models.Manager["DeadLetter"]):
    def get_queryset(self) -> models.QuerySet[DeadLetter]:
        return super().get_queryset().filter(status=Delivery.Status.DEAD)


class DeadLetter(Delivery):
    """A delivery whose retries are exhausted (``status = dead``), as its own
    admin list: the dead-letter queue, where tenants replay or discard them.

    A proxy: the rows are Delivery rows; the manager only filters them, served
    by the ``(tenant, status, created DESC)`` index.
    """

    objects: ClassVar[DeadLetterManager] = DeadLetterManager()

    class Meta:
        proxy = True
        verbose_name = "dead letter"
        verbose_name_plural = "dead letters"


def _operational_event_id() -> str:
    return new_id("oev")


class OperationalEvent(models.Model):
    """Something operators and tenants should know about an endpoint or a message.

    Written in the transaction of the change it reports; if
    ``HOOKPOST_OPERATOR_WEBHOOK_URL`` is set it is also POSTed there, signed
    (``deliveries.operational``), and ``notified_at`` records when that worked.
    """

    class Kind(models.TextChoices):
        ENDPOINT_DISABLED = "endpoint.disabled", "Endpoint disabled"
        ENDPOINT_RECOVERED = "endpoint.recovered", "Endpoint recovered"
        MESSAGE_ATTEMPT_EXHAUSTED = "message.attempt.exhausted", "Message attempts exhausted"

    uid = models.CharField(max_length=40, unique=True, default=_operational_event_id, editable=False)
    kind = models.CharField(max_length=40, choices=Kind.choices)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="operational_events")
    # Kept when the endpoint is deleted: the event is history.
    endpoint = models.ForeignKey(
        Endpoint, null=True, blank=True, on_delete=models.SET_NULL, related_name="operational_events"
    )
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)
    notified_at = models.DateTimeField(null=True, blank=True)
    notify_attempts = models.PositiveSmallIntegerField(default=0)
    notify_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="opevent_tenant_created"),
            models.Index(fields=["kind", "-created_at"], name="opevent_kind_created"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.uid}"
