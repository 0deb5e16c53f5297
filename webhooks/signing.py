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
import re
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
    encoded = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
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
#: The three headers of a signed request, in the order id, timestamp, signature.
HEADER_NAMES = ("webhook-id", "webhook-timestamp", "webhook-signature")
DEFAULT_TOLERANCE_SECONDS = 300


class VerificationError(Exception):
    """A request failed verification; subclasses say why."""


class MissingHeader(VerificationError):
    """``webhook-id``, ``webhook-timestamp`` or ``webhook-signature`` is absent or empty."""


class BadHeader(VerificationError):
    """A header is present but malformed (timestamp not digits, no ``v1`` signature)."""


class StaleTimestamp(VerificationError):
    """The timestamp is older than the tolerance: possibly a replay of a captured request."""


class FutureTimestamp(VerificationError):
    """The timestamp is further ahead than the tolerance: a clock is off, or a forgery."""


class NoMatchingSignature(VerificationError):
    """Well-formed, fresh, but no signature matches any secret: wrong secret or altered request."""


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

    ``secrets_`` is one secret or several (during a rotation), each with or
    without the ``whsec_`` prefix. ``headers`` is any mapping; names are
    matched case-insensitively. ``body`` must be the raw bytes received: a
    re-encoded or re-serialized body does not verify.

    Raises, in this order of checks:

    - MissingHeader: ``webhook-id``, ``webhook-timestamp`` or
      ``webhook-signature`` is absent or empty;
    - BadHeader: the timestamp is not unix seconds in decimal digits, or the
      signature header holds no well-formed ``v1,<base64 of 32 bytes>`` entry;
    - StaleTimestamp / FutureTimestamp: the timestamp is more than
      ``tolerance`` seconds before / after ``now`` (default: the clock);
    - NoMatchingSignature: no ``v1`` signature matches any of the secrets.

    Every ``v1`` signature in the header is compared, in constant time, with
    the expected signature under every secret; one match is enough. Entries of
    other versions (``v1a,...``) are ignored, as the specification asks.
    Configuration errors are not VerificationErrors: no secrets or a negative
    tolerance raise ValueError, a malformed secret raises InvalidSecret.
    """
    if tolerance < 0:
        raise ValueError("tolerance must be >= 0 seconds")
    # Decode the secrets before looking at the request, so a misconfigured
    # receiver fails on every request instead of hiding behind 400s.
    keys = [decode_secret(s) for s in ([secrets_] if isinstance(secrets_, str) else secrets_)]
    if not keys:
        raise ValueError("verify needs at least one secret")
    if not isinstance(body, bytes | bytearray | memoryview):
        raise TypeError("verify the raw body bytes, not a decoded string")

    msg_id, raw_ts, raw_sigs = _required_headers(headers)
    if not _TIMESTAMP_RE.fullmatch(raw_ts):
        raise BadHeader("webhook-timestamp must be unix seconds in decimal digits")
    timestamp = int(raw_ts)
    current = time.time() if now is None else now
    if timestamp < current - tolerance:
        raise StaleTimestamp(
            f"webhook-timestamp is {current - timestamp:.0f}s old; at most {tolerance}s is accepted"
        )
    if timestamp > current + tolerance:
        raise FutureTimestamp(
            f"webhook-timestamp is {timestamp - current:.0f}s in the future; at most {tolerance}s "
            "is accepted (check the clocks)"
        )

    candidates = _v1_signatures(raw_sigs)
    if not candidates:
        raise BadHeader("webhook-signature holds no 'v1,<base64 signature>' entry")
    # raw_ts is canonical (no sign, no leading zeros), so it is exactly the
    # text the sender signed; any other spelling was refused above.
    to_sign = f"{msg_id}.{raw_ts}.".encode() + bytes(body)
    matched = False
    for key in keys:
        expected = hmac.new(key, to_sign, hashlib.sha256).digest()
        for candidate in candidates:
            # No early exit: the time taken does not depend on which pair matched.
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise NoMatchingSignature("no signature in webhook-signature matches the secret(s)")


# Unix seconds without sign or leading zeros (the form senders sign); at most
# 15 digits keeps int() cheap and far beyond any real clock.
_TIMESTAMP_RE = re.compile(r"0|[1-9][0-9]{0,14}")
_DIGEST_BYTES = hashlib.sha256().digest_size


def _required_headers(headers: Mapping[str, str]) -> tuple[str, str, str]:
    """The stripped id, timestamp and signature values; MissingHeader if any is absent or empty."""
    lowered = {str(k).lower(): v for k, v in headers.items()}
    # Surrounding whitespace is not part of an HTTP field value.
    values = [str(lowered.get(name) or "").strip() for name in HEADER_NAMES]
    missing = [name for name, value in zip(HEADER_NAMES, values, strict=True) if not value]
    if missing:
        raise MissingHeader(f"missing header {', '.join(missing)}")
    return values[0], values[1], values[2]


def _v1_signatures(header: str) -> list[bytes]:
    """The decoded digests of the well-formed ``v1`` entries of a signature header."""
    digests: list[bytes] = []
    for entry in header.split():
        version, _, encoded = entry.partition(",")
        if version != SIGNATURE_VERSION:
            continue
        try:
            digest = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(digest) == _DIGEST_BYTES:
            digests.append(digest)
    return digests
