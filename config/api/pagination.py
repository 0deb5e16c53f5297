"""Cursor pagination in the API's shape: ``{"data": [...], "next": cursor|null}``.

Cursors (not offsets) keep deep pages cheap on large histories and stable
while new rows arrive. Newest first.
"""

from __future__ import annotations

from base64 import b64decode
from datetime import UTC
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from config.numbers import NumberRejected, parse_int

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
        try:
            return parse_int(raw, minimum=1, maximum=MAX_LIMIT)
        except NumberRejected as exc:
            raise ValidationError({"limit": [str(exc)]}) from exc

    def decode_cursor(self, request: Request) -> Cursor | None:
        """The cursor of ``?cursor=``, or None; a malformed one is a 422 on ``cursor``.

        DRF's own decoding reads the offset and direction with ``int()``; here
        they go through the strict parser. The offset is clamped to
        ``offset_cutoff`` as DRF does.
        """
        encoded = request.query_params.get(self.cursor_query_param)
        if encoded is None:
            return None
        invalid = ValidationError({"cursor": ["Invalid cursor."]})
        try:
            tokens = parse_qs(b64decode(encoded.encode("ascii")).decode("ascii"), keep_blank_values=True)
            offset = parse_int(
                tokens.get("o", ["0"])[0], minimum=0, maximum=self.offset_cutoff, saturate=True
            )
            reverse = parse_int(tokens.get("r", ["0"])[0], minimum=0, maximum=1)
        except ValueError as exc:  # also NumberRejected, binascii.Error, Unicode errors
            raise invalid from exc
        position = tokens.get("p", [None])[0]
        if position is None:
            return Cursor(offset=offset, reverse=bool(reverse), position=None)
        # The position is a created_at that the client sent back; a forged one
        # must be a 422 here, not a 500 from the query (PostgreSQL also refuses
        # offsets that Python accepts, so it is normalized to UTC).
        try:
            parsed = parse_datetime(position)
            if parsed is None or parsed.tzinfo is None:
                raise ValueError(position)
            normalized = parsed.astimezone(UTC).isoformat()
        except (ValueError, OverflowError) as exc:
            raise invalid from exc
        return Cursor(offset=offset, reverse=bool(reverse), position=normalized)  # type: ignore[arg-type]  # DRF's positions are text; the stubs say int

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
