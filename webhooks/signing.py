"""Standard Webhooks secrets and signatures. No Django imports: receivers can
copy or import this module on its own.

A secret is ``whsec_`` followed by the base64 of 24-64 random bytes; the HMAC
key is the decoded bytes.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable, Mapping

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


# --- Signatures ------------------------------------------------------------------
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_SECONDS = 300


class VerificationError(Exception):
    """A request failed verification; subclasses say why."""


class MissingHeader(VerificationError):
    pass


class BadHeader(VerificationError):
    pass


class StaleTimestamp(VerificationError):
    pass


class FutureTimestamp(VerificationError):
    pass


class NoMatchingSignature(VerificationError):
    pass


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64 HMAC-SHA256>`` signature of ``{id}.{timestamp}.{body}``."""
    to_sign = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(decode_secret(secret), to_sign, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def signature_header(secrets_: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per secret, space-separated."""
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets_)


def verify(
    secrets_: str | Iterable[str],
    headers: Mapping[str, str],
    body: bytes,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Check a Standard Webhooks request; return None or raise a VerificationError.

    Every ``v1`` signature in the header is compared, in constant time, with
    the signature under every given secret; one match is enough. The timestamp
    must be within ``tolerance`` seconds of now, in either direction.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id = lowered["webhook-id"]
        raw_ts = lowered["webhook-timestamp"]
        raw_sigs = lowered["webhook-signature"]
    except KeyError as exc:
        raise MissingHeader(f"missing header {exc.args[0]}") from exc
    try:
        timestamp = int(raw_ts)
    except ValueError as exc:
        raise BadHeader("webhook-timestamp is not an integer") from exc
    current = time.time() if now is None else now
    if timestamp < current - tolerance:
        raise StaleTimestamp("webhook-timestamp is too old")
    if timestamp > current + tolerance:
        raise FutureTimestamp("webhook-timestamp is in the future")
    candidates = [
        part.split(",", 1)[1]
        for part in raw_sigs.split()
        if part.startswith(f"{SIGNATURE_VERSION},") and len(part) > 3
    ]
    if not candidates:
        raise BadHeader("webhook-signature has no v1 signature")
    secret_list = [secrets_] if isinstance(secrets_, str) else list(secrets_)
    for secret in secret_list:
        expected = sign(secret, msg_id, timestamp, body).split(",", 1)[1]
        if any(hmac.compare_digest(expected.encode(), got.encode()) for got in candidates):
            return
    raise NoMatchingSignature("no signature matches")
