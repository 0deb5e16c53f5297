"""Cursor pagination in the API's shape: ``{"data": [...], "next": cursor|null}``.

Cursors (not offsets) keep deep pages cheap on large histories and stable
while new rows arrive. Newest first.
"""
from __future__ import annotations

from datetime import UTC
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

MAX_LIMIT = 250


class DataCursorPagination(CursorPagination):
    page_size = 50
    max_page_size = MAX_LIMIT
    page_size_query_param = "limit"
    ordering = ("-created_at", "-id")

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get("limit")
        if raw is None:
            return self.page_size
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            raise ValidationError({"limit": [f"Must be an integer from 1 to {MAX_LIMIT}."]})
        return int(raw)

    def decode_cursor(self, request: Request) -> Cursor | None:
        try:
            cursor = super().decode_cursor(request)
        except NotFound as exc:
            raise ValidationError({"cursor": ["Invalid cursor."]}) from exc
        if cursor is None or cursor.position is None:
            return cursor
        # The position is a created_at that the client sent back; a forged one
        # must be a 422 here, not a 500 from the query (PostgreSQL also refuses
        # offsets that Python accepts, so it is normalized to UTC).
        try:
            position = parse_datetime(cursor.position)
            if position is None or position.tzinfo is None:
                raise ValueError(cursor.position)
            return cursor._replace(position=position.astimezone(UTC).isoformat())
        except (ValueError, OverflowError) as exc:
            raise ValidationError({"cursor": ["Invalid cursor."]}) from exc

    def encode_cursor(self, cursor: Cursor) -> str:
        # DRF returns a whole URL; the contract returns the opaque token only.
        url = super().encode_cursor(cursor)
        return parse_qs(urlsplit(url).query)[self.cursor_query_param][0]

    def get_paginated_response(self, data: Any) -> Response:
        return Response({"data": data, "next": self.get_next_link()})

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["data", "next"],
            "properties": {
                "data": schema,
                "next": {
                    "type": "string",
                    "nullable": True,
                    "description": "Pass as ?cursor= to get the next page; null on the last page.",
                },
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "The `next` value of the previous page.",
                "schema": {"type": "string"},
            },
            {
                "name": "limit",
                "required": False,
                "in": "query",
                "description": f"Items per page, 1-{MAX_LIMIT} (default {self.page_size}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            },
        ]
