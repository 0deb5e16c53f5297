"""REST views of the configuration domain: tenants, event types, endpoints.

Views only parse, call a service or selector, and shape the answer.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.exceptions import NotFound
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from webhooks import selectors, services
from webhooks.models import Endpoint, EventType, Tenant
from webhooks.permissions import IsOperator, IsOperatorOrReadOnly
from webhooks.serializers import (
    EndpointHealthSerializer,
    EndpointSerializer,
    EndpointUpdateSerializer,
    EndpointWithSecretSerializer,
    EndpointWriteSerializer,
    EventTypeSerializer,
    EventTypeUpdateSerializer,
    RotateSecretSerializer,
    SecretSerializer,
    TenantSerializer,
    TenantUpdateSerializer,
)
from webhooks.tenancy import TenantScopedView


def _valid(serializer_class: Any, request: Request, **kwargs: Any) -> dict[str, Any]:
    serializer = serializer_class(data=request.data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


# --- Tenants -------------------------------------------------------------------


class TenantListView(mixins.ListModelMixin, GenericAPIView[Tenant]):
    permission_classes = [IsOperator]
    serializer_class = TenantSerializer

    def get_queryset(self) -> QuerySet[Tenant]:
        return selectors.tenant_list()

    @extend_schema(operation_id="tenants_list")
    def get(self, request: Request) -> Response:
        return self.list(request)

    @extend_schema(operation_id="tenants_create", responses={201: TenantSerializer, 409: None})
    def post(self, request: Request) -> Response:
        data = _valid(TenantSerializer, request)
        tenant = services.tenant_create(
            uid=data["uid"], name=data["name"], retention_days=data.get("retention_days", 30)
        )
        return Response(TenantSerializer(tenant).data, status=status.HTTP_201_CREATED)


class TenantDetailView(TenantScopedView):
    """A tenant key may read its own tenant; changing or deleting needs an operator key."""

    permission_classes = [IsOperatorOrReadOnly]
    serializer_class = TenantSerializer

    @extend_schema(operation_id="tenants_retrieve")
    def get(self, request: Request, uid: str) -> Response:
        return Response(TenantSerializer(self.tenant).data)

    @extend_schema(request=TenantUpdateSerializer)
    def patch(self, request: Request, uid: str) -> Response:
        data = _valid(TenantUpdateSerializer, request)
        return Response(TenantSerializer(services.tenant_update(tenant=self.tenant, data=data)).data)

    def delete(self, request: Request, uid: str) -> Response:
        services.tenant_delete(tenant=self.tenant)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Event types ---------------------------------------------------------------


class EventTypeListView(mixins.ListModelMixin, GenericAPIView[EventType]):
    permission_classes = [IsOperatorOrReadOnly]
    serializer_class = EventTypeSerializer

    def get_queryset(self) -> QuerySet[EventType]:
        return selectors.event_type_list()

    @extend_schema(operation_id="event_types_list")
    def get(self, request: Request) -> Response:
        return self.list(request)

    @extend_schema(responses={201: EventTypeSerializer, 409: None})
    def post(self, request: Request) -> Response:
        data = _valid(EventTypeSerializer, request)
        event_type = services.event_type_create(
            name=data["name"], description=data.get("description", ""), schema=data.get("schema")
        )
        return Response(EventTypeSerializer(event_type).data, status=status.HTTP_201_CREATED)


class EventTypeDetailView(GenericAPIView[EventType]):
    """Event types are archived (``{"archived": true}``), never deleted."""

    permission_classes = [IsOperatorOrReadOnly]
    serializer_class = EventTypeSerializer

    def _get(self, name: str) -> EventType:
        if "\x00" in name:  # no name has one; PostgreSQL would refuse the query
            raise NotFound()
        event_type = selectors.event_type_list().filter(name=name).first()
        if event_type is None:
            raise NotFound()
        return event_type

    def get(self, request: Request, name: str) -> Response:
        return Response(EventTypeSerializer(self._get(name)).data)

    @extend_schema(request=EventTypeUpdateSerializer)
    def patch(self, request: Request, name: str) -> Response:
        event_type = self._get(name)
        data = _valid(EventTypeUpdateSerializer, request)
        return Response(
            EventTypeSerializer(services.event_type_update(event_type=event_type, data=data)).data
        )


# --- Endpoints -----------------------------------------------------------------


class EndpointListView(mixins.ListModelMixin, TenantScopedView):
    serializer_class = EndpointSerializer

    def get_queryset(self) -> QuerySet[Endpoint]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Endpoint.objects.none()
        return selectors.endpoint_list(tenant=self.tenant)

    @extend_schema(operation_id="endpoints_list")
    def get(self, request: Request, uid: str) -> Response:
        return self.list(request)

    @extend_schema(request=EndpointWriteSerializer, responses={201: EndpointWithSecretSerializer})
    def post(self, request: Request, uid: str) -> Response:
        data = _valid(EndpointWriteSerializer, request)
        created = services.endpoint_create(tenant=self.tenant, **data)
        body = EndpointSerializer(created.endpoint).data
        body["secret"] = created.secret
        return Response(body, status=status.HTTP_201_CREATED)


class EndpointScopedView(TenantScopedView):
    """Base for ``/endpoints/{id}/…``: resolves ``self.endpoint`` or 404s."""

    endpoint: Endpoint

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        endpoint = selectors.endpoint_get(tenant=self.tenant, uid=kwargs["endpoint_id"])
        if endpoint is None:
            raise NotFound()
        self.endpoint = endpoint


class EndpointDetailView(EndpointScopedView):
    serializer_class = EndpointSerializer

    @extend_schema(operation_id="endpoints_retrieve")
    def get(self, request: Request, uid: str, endpoint_id: str) -> Response:
        return Response(EndpointSerializer(self.endpoint).data)

    @extend_schema(request=EndpointUpdateSerializer)
    def patch(self, request: Request, uid: str, endpoint_id: str) -> Response:
        data = _valid(EndpointUpdateSerializer, request)
        endpoint = services.endpoint_update(endpoint=self.endpoint, data=data)
        return Response(EndpointSerializer(selectors.endpoint_get(tenant=self.tenant, uid=endpoint.uid)).data)

    def delete(self, request: Request, uid: str, endpoint_id: str) -> Response:
        services.endpoint_delete(endpoint=self.endpoint)
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndpointSecretView(EndpointScopedView):
    serializer_class = SecretSerializer

    def get(self, request: Request, uid: str, endpoint_id: str) -> Response:
        return Response({"secret": selectors.endpoint_current_secret(endpoint=self.endpoint)})


class EndpointRotateSecretView(EndpointScopedView):
    serializer_class = SecretSerializer

    @extend_schema(request=RotateSecretSerializer, responses={200: SecretSerializer})
    def post(self, request: Request, uid: str, endpoint_id: str) -> Response:
        data = _valid(RotateSecretSerializer, request)
        secret = services.endpoint_secret_rotate(
            endpoint=self.endpoint, grace_seconds=data.get("grace_seconds"), secret=data.get("secret")
        )
        return Response({"secret": secret})


class EndpointHealthView(EndpointScopedView):
    """The endpoint's circuit breaker state, run of failures and last 24 hours of attempts."""

    serializer_class = EndpointHealthSerializer

    @extend_schema(operation_id="endpoints_health")
    def get(self, request: Request, uid: str, endpoint_id: str) -> Response:
        # The runtime domain owns attempts and the shared breaker state.
        from deliveries.selectors import endpoint_health

        return Response(EndpointHealthSerializer(endpoint_health(endpoint=self.endpoint)).data)
