"""Shapes of the messages and deliveries API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from deliveries.models import Attempt, Delivery, Message


class MessageCreateSerializer(serializers.Serializer[Any]):
    event_type = serializers.CharField(max_length=128)
    payload = serializers.JSONField(help_text="A JSON object, sent as `data` in the webhook body.")
    id = serializers.CharField(
        required=False,
        max_length=64,
        help_text="Your own message id (sent as webhook-id); repeating it returns the original.",
    )


class MessageBatchSerializer(serializers.Serializer[Any]):
    messages = MessageCreateSerializer(many=True, allow_empty=False)


class MessageAcceptedSerializer(serializers.Serializer[Any]):
    id = serializers.CharField(source="message.uid")
    event_type = serializers.CharField(source="message.event_type.name")
    created_at = serializers.DateTimeField(source="message.created_at")
    deliveries = serializers.IntegerField(source="delivery_count")


class MessageBatchAcceptedSerializer(serializers.Serializer[Any]):
    data = MessageAcceptedSerializer(many=True)  # type: ignore[assignment]  # a field, not Serializer.data


class MessageSerializer(serializers.ModelSerializer[Message]):
    id = serializers.CharField(source="uid")
    event_type = serializers.CharField(source="event_type.name")
    payload = serializers.JSONField()

    class Meta:
        model = Message
        fields = ["id", "event_type", "payload", "idempotency_key", "created_at"]
        read_only_fields = fields


class DeliverySerializer(serializers.ModelSerializer[Delivery]):
    id = serializers.CharField(source="uid")
    message = serializers.CharField(source="message.uid")
    endpoint = serializers.CharField(source="endpoint.uid")
    event_type = serializers.CharField(source="event_type.name")

    class Meta:
        model = Delivery
        fields = [
            "id",
            "message",
            "endpoint",
            "event_type",
            "status",
            "attempt_count",
            "next_attempt_at",
            "last_status_code",
            "last_error",
            "replay_count",
            "created_at",
            "updated_at",
            "finished_at",
        ]
        read_only_fields = fields


class AttemptSerializer(serializers.ModelSerializer[Attempt]):
    id = serializers.CharField(source="uid")
    request_headers = serializers.JSONField()
    response_headers = serializers.JSONField()

    class Meta:
        model = Attempt
        fields = [
            "id",
            "number",
            "trigger",
            "started_at",
            "duration_ms",
            "request_headers",
            "response_status",
            "response_headers",
            "response_body",
            "error_class",
            "error_message",
        ]
        read_only_fields = fields


class MessageDetailSerializer(MessageSerializer):
    deliveries = DeliverySerializer(many=True)

    class Meta(MessageSerializer.Meta):
        fields = [*MessageSerializer.Meta.fields, "deliveries"]
        read_only_fields = fields


class DeliveryDetailSerializer(DeliverySerializer):
    attempts = AttemptSerializer(many=True)

    class Meta(DeliverySerializer.Meta):
        fields = [*DeliverySerializer.Meta.fields, "attempts"]
        read_only_fields = fields


class DeliveryIdsSerializer(serializers.Serializer[Any]):
    ids = serializers.ListField(
        child=serializers.CharField(max_length=40), allow_empty=False, max_length=1000
    )


class ReplayReportSerializer(serializers.Serializer[Any]):
    replayed = serializers.IntegerField()
    not_replayed = serializers.IntegerField(help_text="Pending, in flight, or endpoint disabled.")


class RecoverSerializer(serializers.Serializer[Any]):
    since = serializers.DateTimeField()
    until = serializers.DateTimeField(required=False)
    statuses = serializers.ListField(
        child=serializers.ChoiceField(choices=["failed", "dead", "skipped"]),
        required=False,
        allow_empty=False,
    )


class RecoverResultSerializer(serializers.Serializer[Any]):
    replayed = serializers.IntegerField()
