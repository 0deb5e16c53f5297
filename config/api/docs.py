"""The API's interactive docs, Swagger UI and Redoc, served entirely from this host.

Their files come from drf-spectacular-sidecar through the static files (no CDN).
The pages also forbid images from elsewhere: Redoc's sidebar always loads its
vendor's logo from its CDN, and a schema's Markdown could name remote images.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerView
from rest_framework.request import Request
from rest_framework.response import Response

IMAGES_FROM_THIS_HOST = "img-src 'self' data:"


class SwaggerView(SpectacularSwaggerView):
    @extend_schema(exclude=True)  # a page, not an API operation
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response: Response = super().get(request, *args, **kwargs)  # type: ignore[no-untyped-call]  # drf-spectacular is unannotated
        response["Content-Security-Policy"] = IMAGES_FROM_THIS_HOST
        return response


class RedocView(SpectacularRedocView):
    # drf-spectacular's page loads its fonts from Google; ours uses the browser's.
    template_name = "api/redoc.html"

    @extend_schema(exclude=True)  # a page, not an API operation
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response: Response = super().get(request, *args, **kwargs)  # type: ignore[no-untyped-call]  # drf-spectacular is unannotated
        response["Content-Security-Policy"] = IMAGES_FROM_THIS_HOST
        return response
