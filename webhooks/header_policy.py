"""What a tenant's custom request header may be: RFC 9110 field names and values.

Checked when an endpoint's headers are written (``webhooks.services``, for the
API and the admin alike) with ``header_problems``, and again by the transport
before every send with ``unsendable``, for rows written under older rules.

- A name is a token (RFC 9110 §5.1: ``tchar``), at most ``MAX_NAME`` characters.
- A value is field-content (§5.5): visible ASCII, spaces and tabs inside, and
  obs-text (0x80-0xFF: Latin-1, what a header's bytes can carry); no
  CR, LF, NUL or other ASCII control, no leading or trailing whitespace; at
  most ``MAX_VALUE`` characters.
- Not one of ``RESERVED``, the headers Hookpost sets itself.
- At most ``MAX_HEADERS`` headers of at most ``MAX_TOTAL`` characters together,
  so our signature headers still fit under common receivers' 16 KiB limit.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

MAX_HEADERS = 50
MAX_NAME = 100
MAX_VALUE = 2048
MAX_TOTAL = 8192
# Headers the platform sets itself; letting tenants override them would break
# signing, framing or our identification.
RESERVED = frozenset(
    {
        "host",
        "content-type",
        "content-length",
        "transfer-encoding",
        "connection",
        "user-agent",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VCHAR = r"\x21-\x7e\x80-\xff"
_FIELD_VALUE = re.compile(rf"(?:[{_VCHAR}](?:[\t {_VCHAR}]*[{_VCHAR}])?)?")
# What http.client cannot put on the wire at all (it raises before sending).
_UNSENDABLE_VALUE = re.compile(r"[\x00\r\n]|[^\x00-\xff]")


def header_problems(headers: Any) -> list[str]:
    """Every way ``headers`` (a name -> value mapping, as parsed JSON) breaks the rules; [] if none."""
    if not isinstance(headers, dict):
        return ["Must be an object of header names to string values."]
    problems: list[str] = []
    if len(headers) > MAX_HEADERS:
        problems.append(f"At most {MAX_HEADERS} headers.")
    total = 0
    for name, value in headers.items():
        problems += _name_problems(name) + _value_problems(name, value)
        total += len(str(name)) + (len(value) if isinstance(value, str) else 0)
    if total > MAX_TOTAL:
        problems.append(f"The headers must add up to at most {MAX_TOTAL} characters of names and values.")
    return problems


def unsendable(headers: Mapping[str, str]) -> str | None:
    """Why ``headers`` cannot be sent as they are (a name that is not a token, a
    value with CR, LF, NUL or a character beyond Latin-1), or None."""
    # This runs on every send: the names are checked once per distinct set,
    # the values in one pass (ASCII, the usual case, without a regex).
    values = " ".join(headers.values())
    if _all_tokens("!".join(headers)) and (
        "\r" not in values and "\n" not in values and "\x00" not in values
        if values.isascii()
        else not _UNSENDABLE_VALUE.search(values)
    ):
        return None
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name):
            return f"the header name {name!r} is not an RFC 9110 token"
        if _UNSENDABLE_VALUE.search(value):
            return f"the value of the header {name!r} has CR, LF, NUL or characters beyond Latin-1"
    return None


@functools.lru_cache(maxsize=1024)
def _all_tokens(names: str) -> bool:
    """Whether ``names``, joined by a token character, is one token."""
    return _TOKEN.fullmatch(names) is not None


def _name_problems(name: Any) -> list[str]:
    if not isinstance(name, str) or not _TOKEN.fullmatch(name) or len(name) > MAX_NAME:
        return [
            f"{name!r} is not a valid header name: letters, digits and !#$%&'*+-.^_`|~ only "
            f"(an RFC 9110 token), at most {MAX_NAME} characters."
        ]
    if name.lower() in RESERVED:
        return [f"{name!r} is set by Hookpost and cannot be overridden."]
    return []


def _value_problems(name: Any, value: Any) -> list[str]:
    if not isinstance(value, str) or len(value) > MAX_VALUE:
        return [f"The value of {name!r} must be a string of at most {MAX_VALUE} characters."]
    if _FIELD_VALUE.fullmatch(value):
        return []
    if value != value.strip(" \t"):
        return [f"The value of {name!r} must not start or end with whitespace."]
    if any(ch in value for ch in "\r\n"):
        return [f"The value of {name!r} must not contain line breaks."]
    beyond = sorted({ch for ch in value if ord(ch) > 0xFF})
    if beyond:
        shown = "".join(beyond[:5])
        return [
            f"The value of {name!r} has characters HTTP headers cannot carry ({shown!r}): "
            "use visible ASCII, spaces, or Latin-1 characters (RFC 9110)."
        ]
    return [f"The value of {name!r} must not contain control characters."]
