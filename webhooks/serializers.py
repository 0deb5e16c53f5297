"""Shapes of the configuration API. Validation of form only; rules live in
``webhooks.services``."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers

from webhooks.models import Endpoint, EventType, Tenant, event_type_name_validator


class StrictIntegerField(serializers.IntegerField):
    """An integer sent as a JSON integer: DRF's own field also takes ``"5"`` and
    ``5.0``, which a client sending them most likely did not mean."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return int(super().to_internal_value(data))


class TenantSerializer(serializers.ModelSerializer[Tenant]):
    class Meta:
        model = Tenant
        fields = ["uid", "name", "retention_days", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]
        # Uniqueness -> 409 from the service.
        extra_kwargs: dict[str, dict[str, Any]] = {"uid": {"validators": []}}


class TenantUpdateSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200, required=False)
    retention_days = serializers.IntegerField(min_value=1, max_value=3650, required=False)


class EventTypeSerializer(serializers.ModelSerializer[EventType]):
    schema = serializers.JSONField(
        required=False, allow_null=True, help_text="JSON Schema (2020-12) that payloads must satisfy."
    )

    class Meta:
        model = EventType
        fields = ["name", "description", "schema", "archived", "created_at", "updated_at"]
        read_only_fields = ["archived", "created_at", "updated_at"]
        extra_kwargs = {"name": {"validators": [event_type_name_validator]}}


class EventTypeUpdateSerializer(serializers.Serializer[Any]):
    description = serializers.CharField(required=False, allow_blank=True)
    schema = serializers.JSONField(required=False, allow_null=True)
    archived = serializers.BooleanField(required=False)


class EndpointSerializer(serializers.ModelSerializer[Endpoint]):
    id = serializers.CharField(source="uid", read_only=True)
    event_types = serializers.SerializerMethodField()
    max_in_flight = serializers.IntegerField(
        read_only=True,
        allow_null=True,
        help_text=(
            "Requests in flight to this endpoint at once, across all workers; "
            "null = the platform default (HOOKPOST_ENDPOINT_MAX_IN_FLIGHT)."
        ),
    )

    class Meta:
        model = Endpoint
        fields = [
            "id",
            "url",
            "description",
            "event_types",
            "enabled",
            "disabled_reason",
            "disabled_at",
            "headers",
            "rate_limit",
            "max_in_flight",
            "timeout_seconds",
            "retry_schedule",
            "circuit_state",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_event_types(self, obj: Endpoint) -> list[str]:
        return sorted(et.name for et in obj.event_types.all())


class EndpointWithSecretSerializer(EndpointSerializer):
    secret = serializers.CharField(read_only=True)

    class Meta(EndpointSerializer.Meta):
        fields = [*EndpointSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class EndpointWriteSerializer(serializers.Serializer[Any]):
    url = serializers.CharField(max_length=2048)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)
    event_types = serializers.ListField(
        child=serializers.CharField(max_length=128),
        required=False,
        max_length=500,
        help_text="Event type names; empty = every event type.",
    )
    enabled = serializers.BooleanField(required=False)
    headers = serializers.DictField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False),
        required=False,
        help_text=(
            "Sent with every request. Names are RFC 9110 tokens; values are visible ASCII, "
            "inner spaces and tabs, or Latin-1 characters; at most 50 headers, 2,048 characters "
            "a value, 8,192 in all."
        ),
    )
    rate_limit = serializers.IntegerField(
        min_value=1, max_value=100_000, required=False, allow_null=True, help_text="Per second."
    )
    max_in_flight = StrictIntegerField(
        min_value=1,
        max_value=settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT_LIMIT,
        required=False,
        allow_null=True,
        help_text=(
            "Requests in flight to this endpoint at once, across all workers; "
            "null = the platform default (HOOKPOST_ENDPOINT_MAX_IN_FLIGHT)."
        ),
    )
    timeout_seconds = serializers.IntegerField(min_value=1, max_value=30, required=False)
    retry_schedule = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        required=False,
        allow_null=True,
        help_text="Seconds between attempts; null = the platform default.",
    )
    secret = serializers.CharField(
        required=False, write_only=True, help_text="Bring your own whsec_ secret (optional)."
    )


class EndpointUpdateSerializer(EndpointWriteSerializer):
    url = serializers.CharField(max_length=2048, required=False)
    secret = None  # type: ignore[assignment]  # None removes the inherited field; rotate-secret changes secrets


class SecretSerializer(serializers.Serializer[Any]):
    secret = serializers.CharField(read_only=True)


class RotateSecretSerializer(serializers.Serializer[Any]):
    grace_seconds = serializers.IntegerField(
        required=False, min_value=0, help_text="How long the old secret keeps signing (default 24 h)."
    )
    secret = serializers.CharField(required=False, help_text="Bring your own whsec_ secret (optional).")


class EndpointHealthSerializer(serializers.Serializer[Any]):
    """``GET /endpoints/{id}/health/``: the circuit, the run of failures, the last 24 hours."""

    id = serializers.CharField(source="endpoint_id", read_only=True)
    enabled = serializers.BooleanField(read_only=True)
    disabled_reason = serializers.CharField(read_only=True)
    disabled_at = serializers.DateTimeField(read_only=True, allow_null=True)
    circuit_state = serializers.ChoiceField(choices=Endpoint.CircuitState.choices, read_only=True)
    circuit_changed_at = serializers.DateTimeField(read_only=True, allow_null=True)
    circuit_retry_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="When an open circuit may let a probe through."
    )
    circuit_cooldown_seconds = serializers.FloatField(read_only=True, allow_null=True)
    consecutive_failures = serializers.IntegerField(read_only=True, help_text="Failed attempts in a row.")
    failing_since = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="Start of the current run of failed attempts."
    )
    last_success_at = serializers.DateTimeField(read_only=True, allow_null=True)
    last_failure_at = serializers.DateTimeField(read_only=True, allow_null=True)
    attempts_24h = serializers.IntegerField(read_only=True)
    succeeded_24h = serializers.IntegerField(read_only=True)
    failed_24h = serializers.IntegerField(read_only=True)
    success_rate_24h = serializers.FloatField(
        read_only=True, allow_null=True, help_text="Share of attempts answered 2xx; null without attempts."
    )
