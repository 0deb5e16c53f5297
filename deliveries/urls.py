from __future__ import annotations

from django.urls import path

from deliveries import api

urlpatterns = [
    path("tenants/<str:uid>/messages/", api.MessageListView.as_view(), name="message-list"),
    path("tenants/<str:uid>/messages/batch/", api.MessageBatchView.as_view(), name="message-batch"),
    path(
        "tenants/<str:uid>/messages/<str:message_id>/",
        api.MessageDetailView.as_view(),
        name="message-detail",
    ),
    path("tenants/<str:uid>/deliveries/", api.DeliveryListView.as_view(), name="delivery-list"),
    path(
        "tenants/<str:uid>/deliveries/replay/",
        api.DeliveryBulkReplayView.as_view(),
        name="delivery-replay-selection",
    ),
    path(
        "tenants/<str:uid>/deliveries/<str:delivery_id>/",
        api.DeliveryDetailView.as_view(),
        name="delivery-detail",
    ),
    path(
        "tenants/<str:uid>/deliveries/<str:delivery_id>/replay/",
        api.DeliveryReplayView.as_view(),
        name="delivery-replay",
    ),
    path(
        "tenants/<str:uid>/endpoints/<str:endpoint_id>/recover/",
        api.EndpointRecoverView.as_view(),
        name="endpoint-recover",
    ),
]
