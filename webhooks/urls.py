from __future__ import annotations

from django.urls import path

from webhooks import api

urlpatterns = [
    path("tenants/", api.TenantListView.as_view(), name="tenant-list"),
    path("tenants/<str:uid>/", api.TenantDetailView.as_view(), name="tenant-detail"),
    path("event-types/", api.EventTypeListView.as_view(), name="event-type-list"),
    path("event-types/<str:name>/", api.EventTypeDetailView.as_view(), name="event-type-detail"),
    path("tenants/<str:uid>/endpoints/", api.EndpointListView.as_view(), name="endpoint-list"),
    path(
        "tenants/<str:uid>/endpoints/<str:endpoint_id>/",
        api.EndpointDetailView.as_view(),
        name="endpoint-detail",
    ),
    path(
        "tenants/<str:uid>/endpoints/<str:endpoint_id>/secret/",
        api.EndpointSecretView.as_view(),
        name="endpoint-secret",
    ),
    path(
        "tenants/<str:uid>/endpoints/<str:endpoint_id>/rotate-secret/",
        api.EndpointRotateSecretView.as_view(),
        name="endpoint-rotate-secret",
    ),
    path(
        "tenants/<str:uid>/endpoints/<str:endpoint_id>/health/",
        api.EndpointHealthView.as_view(),
        name="endpoint-health",
    ),
]
