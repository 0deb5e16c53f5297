"""Standard Webhooks secrets and signatures. No Django imports: receivers can
copy or import this module on its own.

A secret is ``whsec_`` followed by the base64 of 24-64 random bytes; the HMAC
key is the decoded bytes.
"""
from __future__ import annotations

import base64
import binascii
import secrets

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
DEFAULT_SECRET_BYTES = 32


class InvalidSecret(ValueError):
    """The text is not a ``whsec_`` secret of 24-64 bytes."""


def generate_secret(num_bytes: int = DEFAULT_SECRET_BYTES) -> str:
    """Return a new random secret, ``whsec_`` + base64 of ``num_bytes`` bytes."""
    if not MIN_SECRET_BYTES <= num_bytes <= MAX_SECRET_BYTES:
        raise ValueError("a secret has 24 to 64 bytes")
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(num_bytes)).decode("ascii")


def decode_secret(secret: str) -> bytes:
    """Return the HMAC key of ``secret`` (with or without the ``whsec_`` prefix).

    Raises InvalidSecret when the rest is not base64 of 24-64 bytes.
    """
    encoded = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSecret("the secret is not valid base64 after 'whsec_'") from exc
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise InvalidSecret(
            f"the secret must decode to {MIN_SECRET_BYTES}-{MAX_SECRET_BYTES} bytes, not {len(key)}"
        )
    return key
