"""API key format: ``hp_`` + 43 url-safe random characters.

Only the SHA-256 of a key is stored. A fast hash is right here (unlike
passwords): keys carry 256 bits of randomness, so brute force is hopeless,
and every API request must look its key up cheaply.
"""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "hp_"
SHOWN_PREFIX_LENGTH = 10


def generate_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def shown_prefix(raw: str) -> str:
    """The first characters, stored in clear so people can tell keys apart."""
    return raw[:SHOWN_PREFIX_LENGTH]
