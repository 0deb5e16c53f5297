"""Routes: the REST API under /api/v1/, its schema and docs (Swagger UI, Redoc), and the admin."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from config import health, metrics
from config.api.docs import RedocView, SwaggerView

urlpatterns = [
    path("api/v1/", include("webhooks.urls")),
    path("api/v1/", include("deliveries.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", RedocView.as_view(url_name="schema"), name="api-redoc"),
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
]

handler404 = "config.api.errors.json_not_found"
handler500 = "config.api.errors.json_server_error"
