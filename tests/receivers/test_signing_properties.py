"""Properties of ``webhooks.signing.verify`` over random bodies, ids,
timestamps and secrets, and its error for each kind of bad request."""

from __future__ import annotations

import base64

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from webhooks import signing

TOLERANCE = signing.DEFAULT_TOLERANCE_SECONDS

keys = st.binary(min_size=24, max_size=64)
# Header-safe ids: visible ASCII (HTTP strips surrounding whitespace anyway).
ids = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=64)
timestamps = st.integers(min_value=0, max_value=10**12)
bodies = st.binary(max_size=2048)


@st.composite
def secrets(draw: st.DrawFn) -> str:
    """A secret of 24-64 random bytes, with or without the ``whsec_`` prefix."""
    encoded = base64.b64encode(draw(keys)).decode()
    return ("whsec_" + encoded) if draw(st.booleans()) else encoded


def headers_for(secret: str | list[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    secret_list = [secret] if isinstance(secret, str) else secret
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signing.signature_header(secret_list, msg_id, timestamp, body),
    }


# --- Properties ---------------------------------------------------------------------------
@given(
    secret=secrets(), msg_id=ids, timestamp=timestamps, body=bodies, skew=st.integers(-TOLERANCE, TOLERANCE)
)
def test_a_signed_request_verifies_within_the_window(
    secret: str, msg_id: str, timestamp: int, body: bytes, skew: int
) -> None:
    signing.verify(secret, headers_for(secret, msg_id, timestamp, body), body, now=timestamp + skew)


@given(secret=secrets(), msg_id=ids, timestamp=timestamps, body=bodies.filter(bool), data=st.data())
def test_any_single_byte_change_in_the_body_fails(
    secret: str, msg_id: str, timestamp: int, body: bytes, data: st.DataObject
) -> None:
    headers = headers_for(secret, msg_id, timestamp, body)
    index = data.draw(st.integers(0, len(body) - 1), label="index")
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != body[index]), label="byte")
    changed = body[:index] + bytes([byte]) + body[index + 1 :]

    with pytest.raises(signing.NoMatchingSignature):
        signing.verify(secret, headers, changed, now=timestamp)


@given(
    secret=secrets(), msg_id=ids, timestamp=timestamps, body=bodies, extra=st.binary(min_size=1, max_size=8)
)
def test_appending_or_truncating_the_body_fails(
    secret: str, msg_id: str, timestamp: int, body: bytes, extra: bytes
) -> None:
    headers = headers_for(secret, msg_id, timestamp, body + extra)

    with pytest.raises(signing.NoMatchingSignature):
        signing.verify(secret, headers, body, now=timestamp)  # truncated
    with pytest.raises(signing.NoMatchingSignature):
        signing.verify(secret, headers, body + extra + extra, now=timestamp)  # extended


@given(secret=secrets(), msg_id=ids, other_id=ids, timestamp=timestamps, body=bodies)
def test_any_change_in_the_id_fails(
    secret: str, msg_id: str, other_id: str, timestamp: int, body: bytes
) -> None:
    assume(other_id != msg_id)
    headers = {**headers_for(secret, msg_id, timestamp, body), "webhook-id": other_id}

    with pytest.raises(signing.NoMatchingSignature):
        signing.verify(secret, headers, body, now=timestamp)


@given(
    secret=secrets(),
    msg_id=ids,
    timestamp=timestamps,
    body=bodies,
    delta=st.integers(-TOLERANCE, TOLERANCE).filter(bool),
)
def test_any_change_in_the_timestamp_fails(
    secret: str, msg_id: str, timestamp: int, body: bytes, delta: int
) -> None:
    assume(timestamp + delta >= 0)
    # A timestamp still inside the window, so only the signature can refuse it.
    headers = {**headers_for(secret, msg_id, timestamp, body), "webhook-timestamp": str(timestamp + delta)}

    with pytest.raises(signing.NoMatchingSignature):
        signing.verify(secret, headers, body, now=timestamp)


@given(secret=secrets(), msg_id=ids, timestamp=timestamps, body=bodies, beyond=st.integers(1, 10**6))
def test_a_stale_timestamp_fails_as_stale(
    secret: str, msg_id: str, timestamp: int, body: bytes, beyond: int
) -> None:
    headers = headers_for(secret, msg_id, timestamp, body)

    with pytest.raises(signing.StaleTimestamp):
        signing.verify(secret, headers, body, now=timestamp + TOLERANCE + beyond)


@given(secret=secrets(), msg_id=ids, timestamp=timestamps, body=bodies, beyond=st.integers(1, 10**6))
def test_a_future_timestamp_fails_as_future(
    secret: str, msg_id: str, timestamp: int, body: bytes, beyond: int
) -> None:
    headers = headers_for(secret, msg_id, timestamp, body)

    with pytest.raises(signing.FutureTimestamp):
        signing.verify(secret, headers, body, now=timestamp - TOLERANCE - beyond)


@given(
    signing_secrets=st.lists(secrets(), min_size=1, max_size=3),
    stranger=secrets(),
    msg_id=ids,
    timestamp=timestamps,
    body=bodies,
    data=st.data(),
)
def test_rotation_any_signing_secret_verifies_and_a_stranger_does_not(
    signing_secrets: list[str], stranger: str, msg_id: str, timestamp: int, body: bytes, data: st.DataObject
) -> None:
    headers = headers_for(signing_secrets, msg_id, timestamp, body)
    held = data.draw(st.sampled_from(signing_secrets), label="held")

    signing.verify(held, headers, body, now=timestamp)
    signing.verify([stranger, held], headers, body, now=timestamp)
    assume(signing.decode_secret(stranger) not in {signing.decode_secret(s) for s in signing_secrets})
    with pytest.raises(signing.NoMatchingSignature):
        signing.verify(stranger, headers, body, now=timestamp)


# --- Errors for malformed requests -----------------------------------------------------------
SECRET = signing.generate_secret()
BODY = b'{"type":"invoice.paid","timestamp":"2026-11-23T15:00:00.000000Z","data":{}}'
NOW = 1_800_000_000


def good_headers() -> dict[str, str]:
    return headers_for(SECRET, "msg_1", NOW, BODY)


def test_a_good_request_verifies_and_header_names_are_case_insensitive() -> None:
    signing.verify(SECRET, {k.title(): v for k, v in good_headers().items()}, BODY, now=NOW)


def test_the_window_includes_its_edges() -> None:
    signing.verify(SECRET, good_headers(), BODY, now=NOW + TOLERANCE)
    signing.verify(SECRET, good_headers(), BODY, now=NOW - TOLERANCE)


@pytest.mark.parametrize("name", signing.HEADER_NAMES)
@pytest.mark.parametrize("value", [None, "", "   "], ids=["absent", "empty", "blank"])
def test_a_missing_header_is_missing(name: str, value: str | None) -> None:
    headers = good_headers()
    if value is None:
        del headers[name]
    else:
        headers[name] = value

    with pytest.raises(signing.MissingHeader, match=name):
        signing.verify(SECRET, headers, BODY, now=NOW)


@pytest.mark.parametrize(
    "timestamp",
    ["abc", "1.8e9", "-1800000000", "+1800000000", "01800000000", "1_800_000_000", "١٢٣", "9" * 20],
)
def test_a_timestamp_that_is_not_canonical_unix_seconds_is_a_bad_header(timestamp: str) -> None:
    headers = {**good_headers(), "webhook-timestamp": timestamp}

    with pytest.raises(signing.BadHeader):
        signing.verify(SECRET, headers, BODY, now=NOW)


@pytest.mark.parametrize(
    "signature",
    ["garbage", "v1", "v1,", "v2,abcd", "v1,not base64!", "v1,AAAA", "v1a,c2lnbmF0dXJl"],
)
def test_a_signature_header_without_a_well_formed_v1_entry_is_a_bad_header(signature: str) -> None:
    headers = {**good_headers(), "webhook-signature": signature}

    with pytest.raises(signing.BadHeader):
        signing.verify(SECRET, headers, BODY, now=NOW)


def test_unknown_versions_and_malformed_entries_are_skipped_when_a_v1_entry_matches() -> None:
    good = good_headers()["webhook-signature"]
    headers = {**good_headers(), "webhook-signature": f"v1a,c2ln v1,!!! {good}  v2,xyz"}

    signing.verify(SECRET, headers, BODY, now=NOW)


def test_a_well_formed_but_wrong_signature_is_no_matching_signature() -> None:
    wrong = "v1," + base64.b64encode(bytes(32)).decode()
    headers = {**good_headers(), "webhook-signature": wrong}

    with pytest.raises(signing.NoMatchingSignature):
        signing.verify(SECRET, headers, BODY, now=NOW)


def test_every_error_is_a_verification_error() -> None:
    for klass in (
        signing.MissingHeader,
        signing.BadHeader,
        signing.StaleTimestamp,
        signing.FutureTimestamp,
        signing.NoMatchingSignature,
    ):
        assert issubclass(klass, signing.VerificationError)


def test_configuration_errors_are_not_verification_errors() -> None:
    with pytest.raises(ValueError, match="at least one secret"):
        signing.verify([], good_headers(), BODY, now=NOW)
    with pytest.raises(signing.InvalidSecret):
        signing.verify("whsec_short", good_headers(), BODY, now=NOW)
    with pytest.raises(ValueError, match="tolerance"):
        signing.verify(SECRET, good_headers(), BODY, tolerance=-1, now=NOW)
    with pytest.raises(TypeError, match="raw body bytes"):
        signing.verify(SECRET, good_headers(), BODY.decode(), now=NOW)  # type: ignore[arg-type]  # the wrong type on purpose
