"""What a receiver's reply becomes when stored.

A receiver may answer anything: binary or invalid UTF-8 bodies, NUL bytes in
the body or the headers, header bytes beyond ASCII, a hundred headers of
64 KiB each. PostgreSQL refuses NUL in text (``\\x00``) and in jsonb
(``\\u0000``), and psycopg cannot encode lone surrogates, so every part of a
reply that may be stored (the attempt row, the delivery's last error, an
operational event) goes through here and comes out as storable ``str``:

- ``excerpt``: the body's first bytes decoded as UTF-8. Valid UTF-8 reads as
  itself; every other byte becomes ``\\xNN`` (Python's ``backslashreplace``),
  and so does NUL (``\\x00``), so the bytes can be recovered from the text; a
  body that itself contains a backslash followed by ``xNN`` is the one
  ambiguity.
- ``headers``: names lower-cased; names and values as http.client decodes the
  bytes, Latin-1 (one character per byte, so nothing is lost or refused);
  repeated fields joined with ", " (RFC 9110 §5.3); NUL escaped as above; at
  most ``MAX_HEADERS`` fields, names cut at ``MAX_NAME`` and values at
  ``MAX_VALUE`` characters, a cut marked with "…".
- ``text``: an error message, escaped the same way and capped.

The transport applies ``headers`` and ``text`` to every result it returns, so
nothing downstream (recording, retry, breaker, operator notices, logs) holds
text PostgreSQL would refuse; the body stays bytes in the result, and the
recording keeps its ``excerpt``.
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_HEADERS = 50
MAX_NAME = 128
MAX_VALUE = 1024
MAX_TEXT = 1000
CUT = "…"


def excerpt(body: bytes, limit: int) -> str:
    """The first ``limit`` bytes of ``body`` as storable text (see the module docstring)."""
    return _escape_nul(body[:limit].decode("utf-8", errors="backslashreplace"))


def headers(fields: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Response header ``fields`` (name, value), in the order received, as stored."""
    stored: dict[str, str] = {}
    for name, value in fields:
        key = _capped(text(name.lower(), limit=None), MAX_NAME)
        value = text(value, limit=None)
        if key in stored:
            stored[key] = _capped(f"{stored[key]}, {value}", MAX_VALUE)
        elif len(stored) < MAX_HEADERS:
            stored[key] = _capped(value, MAX_VALUE)
    return stored


def text(value: str, limit: int | None = MAX_TEXT) -> str:
    """``value`` without NUL or lone surrogates (escaped), cut at ``limit`` characters."""
    if not value.isascii():
        value = value.encode("utf-8", errors="backslashreplace").decode("utf-8")
    value = _escape_nul(value)
    return value if limit is None else _capped(value, limit)


def _escape_nul(value: str) -> str:
    return value.replace("\x00", "\\x00") if "\x00" in value else value


def _capped(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - len(CUT)] + CUT
