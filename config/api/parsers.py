"""JSON parser with a size limit, so oversized bodies get 413 before parsing.

It also refuses (400) JSON that is valid but cannot be stored or processed:
NUL characters (PostgreSQL text and jsonb cannot hold them), unpaired
surrogates (not encodable as UTF-8) and nesting deeper than ``MAX_DEPTH``
(it would exhaust Python's recursion when serialized or validated). Such
bodies would otherwise fail deep inside a view with a 500.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from config.api.errors import RequestTooLarge
from config.numbers import NumberRejected, parse_int

MAX_DEPTH = 64
# Both can only arrive as \u escapes: raw control characters and surrogates
# encoded as bytes are already refused by the decoder and json.loads.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _check_storable(value: Any, text: str) -> None:
    """Raise ParseError for NUL, unpaired surrogates or nesting over MAX_DEPTH."""
    check_strings = "\\u" in text
    if not check_strings and text.count("[") + text.count("{") <= MAX_DEPTH:
        return  # cannot be too deep; the common case costs two C-speed counts
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise ParseError(f"The body is nested deeper than {MAX_DEPTH} levels.")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
            if isinstance(item, dict) and check_strings:
                stack.extend((key, depth) for key in item)
        elif check_strings and isinstance(item, str) and _UNSTORABLE.search(item):
            raise ParseError("The body contains \\u0000 or an unpaired surrogate, which cannot be stored.")


def _declared_length(value: str, limit: int) -> int:
    """A ``Content-Length`` as bytes, at most ``limit + 1``; 0 when unreadable.

    An unreadable value is not trusted either way: the body is read with the
    cap below, which decides.
    """
    try:
        return parse_int(value, minimum=0, maximum=limit + 1, saturate=True)
    except NumberRejected:
        return 0


class LimitedJSONParser(JSONParser):
    """Reads at most ``HOOKPOST_MAX_REQUEST_BYTES``; larger bodies -> 413."""

    def parse(
        self,
        stream: IO[bytes],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        limit = settings.HOOKPOST_MAX_REQUEST_BYTES
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and _declared_length(declared, limit) > limit:
            raise RequestTooLarge(f"The request body is larger than {limit} bytes.")
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise RequestTooLarge(f"The request body is larger than {limit} bytes.")
        try:
            text = raw.decode("utf-8")
            value = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"The body is not valid JSON: {exc}") from exc
        except RecursionError as exc:
            raise ParseError(f"The body is nested deeper than {MAX_DEPTH} levels.") from exc
        _check_storable(value, text)
        return value
