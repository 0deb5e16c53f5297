"""Signed requests as Hookpost's worker builds them, for receiver tests."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from typing import Any

from webhooks import signing


def new_msg_id() -> str:
    """A fresh ``webhook-id``: unique per test run, so the shared Redis replay cache never collides."""
    return f"msg_{uuid.uuid4().hex}"


def event_body(event_type: str = "invoice.paid", data: Any = None, *, indent: int | None = None) -> bytes:
    """A Hookpost body; compact JSON like the worker's unless ``indent`` is given."""
    payload = {
        "type": event_type,
        "timestamp": "2026-11-23T15:00:00.000000Z",
        "data": {"invoice": "in_1", "amount": 1250, "note": "café ✓"} if data is None else data,
    }
    separators = (",", ":") if indent is None else (", ", ": ")
    return json.dumps(payload, separators=separators, indent=indent, ensure_ascii=False).encode("utf-8")


def signed_headers(
    secrets: str | Iterable[str], body: bytes, *, msg_id: str | None = None, timestamp: int | None = None
) -> dict[str, str]:
    """The three webhook headers for ``body``, one signature per secret."""
    secret_list = [secrets] if isinstance(secrets, str) else list(secrets)
    msg_id = msg_id or new_msg_id()
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signing.signature_header(secret_list, msg_id, timestamp, body),
    }
