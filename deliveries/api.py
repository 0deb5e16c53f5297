"""REST views of the runtime domain: publish messages, read history."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from deliveries import replay, selectors, services
from deliveries.filters import DeliveryFilter, MessageFilter
from deliveries.models import Delivery, Message
from deliveries.serializers import (
    DeliveryDetailSerializer,
    DeliveryIdsSerializer,
    DeliverySerializer,
    MessageAcceptedSerializer,
    MessageBatchAcceptedSerializer,
    MessageBatchSerializer,
    MessageCreateSerializer,
    MessageDetailSerializer,
    MessageSerializer,
    RecoverResultSerializer,
    RecoverSerializer,
    ReplayReportSerializer,
)
from webhooks.selectors import endpoint_get
from webhooks.tenancy import TenantScopedView

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description="Repeat-safe publishing: the same key again returns the original message (200).",
)


def _new_message(item: dict[str, Any], idempotency_key: str | None) -> services.NewMessage:
    return services.NewMessage(
        event_type=item["event_type"],
        payload=item["payload"],
        uid=item.get("id"),
        idempotency_key=idempotency_key,
    )


class MessageListView(mixins.ListModelMixin, TenantScopedView):
    serializer_class = MessageSerializer
    filterset_class = MessageFilter

    def get_queryset(self) -> QuerySet[Message]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Message.objects.none()
        return selectors.message_list(tenant=self.tenant)

    @extend_schema(operation_id="messages_list")
    def get(self, request: Request, uid: str) -> Response:
        return self.list(request)

    @extend_schema(
        operation_id="messages_create",
        request=MessageCreateSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={202: MessageAcceptedSerializer, 200: MessageAcceptedSerializer, 409: None},
    )
    def post(self, request: Request, uid: str) -> Response:
        serializer = MessageCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key")
        published = services.message_publish(
            tenant=self.tenant, new=_new_message(serializer.validated_data, key)
        )
        code = status.HTTP_202_ACCEPTED if published.created else status.HTTP_200_OK
        return Response(MessageAcceptedSerializer(published).data, status=code)


class MessageBatchView(TenantScopedView):
    serializer_class = MessageBatchAcceptedSerializer

    @extend_schema(
        request=MessageBatchSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={202: MessageBatchAcceptedSerializer, 200: MessageBatchAcceptedSerializer, 409: None},
        description="Up to 1,000 messages in one transaction: all are accepted or none. "
        "With Idempotency-Key K, item i uses the key K:i.",
    )
    def post(self, request: Request, uid: str) -> Response:
        serializer = MessageBatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key")
        batch = [
            _new_message(item, f"{key}:{index}" if key else None)
            for index, item in enumerate(serializer.validated_data["messages"])
        ]
        results = services.message_publish_batch(tenant=self.tenant, batch=batch)
        code = status.HTTP_202_ACCEPTED if any(r.created for r in results) else status.HTTP_200_OK
        return Response({"data": MessageAcceptedSerializer(results, many=True).data}, status=code)


class MessageDetailView(TenantScopedView):
    serializer_class = MessageDetailSerializer

    @extend_schema(operation_id="messages_retrieve")
    def get(self, request: Request, uid: str, message_id: str) -> Response:
        message = selectors.message_get(tenant=self.tenant, uid=message_id)
        if message is None:
            raise NotFound()
        return Response(MessageDetailSerializer(message).data)


class DeliveryListView(mixins.ListModelMixin, TenantScopedView):
    serializer_class = DeliverySerializer
    filterset_class = DeliveryFilter

    def get_queryset(self) -> QuerySet[Delivery]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Delivery.objects.none()
        return selectors.delivery_list(tenant=self.tenant)

    @extend_schema(operation_id="deliveries_list")
    def get(self, request: Request, uid: str) -> Response:
        return self.list(request)


class DeliveryDetailView(TenantScopedView):
    serializer_class = DeliveryDetailSerializer

    @extend_schema(operation_id="deliveries_retrieve")
    def get(self, request: Request, uid: str, delivery_id: str) -> Response:
        delivery = selectors.delivery_get(tenant=self.tenant, uid=delivery_id)
        if delivery is None:
            raise NotFound()
        return Response(DeliveryDetailSerializer(delivery).data)


# --- Replay ------------------------------------------------------------------------


class DeliveryReplayView(TenantScopedView):
    serializer_class = DeliverySerializer

    @extend_schema(
        operation_id="deliveries_replay", request=None, responses={202: DeliverySerializer, 409: None}
    )
    def post(self, request: Request, uid: str, delivery_id: str) -> Response:
        delivery = selectors.delivery_get(tenant=self.tenant, uid=delivery_id)
        if delivery is None:
            raise NotFound()
        # No input is needed, but the body is parsed like on every write route, so a
        # malformed, non-JSON or oversized one is refused (400/415/413) and replays nothing.
        _ = request.data
        replayed = replay.delivery_replay(delivery=delivery)
        return Response(DeliverySerializer(replayed).data, status=status.HTTP_202_ACCEPTED)


class DeliveryBulkReplayView(TenantScopedView):
    serializer_class = ReplayReportSerializer

    @extend_schema(
        operation_id="deliveries_replay_selection",
        request=DeliveryIdsSerializer,
        responses={202: ReplayReportSerializer},
        description="Replay up to 1,000 deliveries by id; pending or in-flight ones are left alone.",
    )
    def post(self, request: Request, uid: str) -> Response:
        serializer = DeliveryIdsSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        chosen = selectors.delivery_list(tenant=self.tenant).filter(uid__in=serializer.validated_data["ids"])
        report = replay.deliveries_replay(tenant=self.tenant, deliveries=chosen)
        return Response(ReplayReportSerializer(report).data, status=status.HTTP_202_ACCEPTED)


class EndpointRecoverView(TenantScopedView):
    serializer_class = RecoverResultSerializer

    @extend_schema(
        operation_id="endpoints_recover",
        request=RecoverSerializer,
        responses={202: RecoverResultSerializer, 409: None},
    )
    def post(self, request: Request, uid: str, endpoint_id: str) -> Response:
        endpoint = endpoint_get(tenant=self.tenant, uid=endpoint_id)
        if endpoint is None:
            raise NotFound()
        serializer = RecoverSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        count = replay.endpoint_recover(
            endpoint=endpoint, since=data["since"], until=data.get("until"), statuses=data.get("statuses")
        )
        return Response({"replayed": count}, status=status.HTTP_202_ACCEPTED)
