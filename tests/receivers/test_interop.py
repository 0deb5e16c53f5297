"""Our signatures verify with the ``standardwebhooks`` and ``svix`` packages, and
theirs verify with ours: same id, timestamp and body, both directions."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import standardwebhooks
import svix.webhooks
from hypothesis import given
from hypothesis import strategies as st

from tests.receivers.helpers import event_body, new_msg_id, signed_headers
from webhooks import signing

# Each library: (name, make a verifier/signer from a secret, its verification error).
LIBRARIES: list[tuple[str, Callable[[str], Any], type[Exception]]] = [
    ("standardwebhooks", standardwebhooks.Webhook, standardwebhooks.WebhookVerificationError),
    ("svix", svix.webhooks.Webhook, svix.webhooks.WebhookVerificationError),
]
library_ids = [name for name, _, _ in LIBRARIES]


@pytest.mark.parametrize(("name", "webhook", "error"), LIBRARIES, ids=library_ids)
def test_our_signature_verifies_with_the_library(
    name: str, webhook: Callable[[str], Any], error: type[Exception]
) -> None:
    # Given a request signed by webhooks.signing, as the worker signs it
    secret = signing.generate_secret()
    body = event_body()
    headers = signed_headers(secret, body)

    # Then the library accepts it and returns the parsed body
    assert webhook(secret).verify(body, headers)["data"]["note"] == "café ✓"
    # ... and refuses the same request under another secret
    with pytest.raises(error):
        webhook(signing.generate_secret()).verify(body, headers)


@pytest.mark.parametrize(("name", "webhook", "error"), LIBRARIES, ids=library_ids)
def test_our_rotation_header_verifies_with_either_secret_in_the_library(
    name: str, webhook: Callable[[str], Any], error: type[Exception]
) -> None:
    # Given a request signed with an old and a new secret (a rotation's grace period)
    old, new = signing.generate_secret(), signing.generate_secret(64)
    body = event_body()
    headers = signed_headers([old, new], body)
    assert len(headers["webhook-signature"].split()) == 2

    # Then a receiver holding either secret accepts it
    for secret in (old, new):
        webhook(secret).verify(body, headers)


@pytest.mark.parametrize(("name", "webhook", "error"), LIBRARIES, ids=library_ids)
@pytest.mark.parametrize("with_prefix", [True, False], ids=["whsec_", "bare"])
def test_library_signature_verifies_with_ours(
    name: str, webhook: Callable[[str], Any], error: type[Exception], with_prefix: bool
) -> None:
    # Given a request signed by the library
    secret = signing.generate_secret()
    msg_id, timestamp, body = new_msg_id(), int(time.time()), event_body()
    theirs = webhook(secret).sign(msg_id, datetime.fromtimestamp(timestamp, tz=UTC), body.decode())
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": theirs}

    # Then ours accepts it, with the secret given with or without its prefix
    our_secret = secret if with_prefix else secret.removeprefix("whsec_")
    signing.verify(our_secret, headers, body)
    # ... because both sides produce the same signature for the same id, timestamp and body
    assert theirs == signing.sign(secret, msg_id, timestamp, body)
    # ... and ours refuses it under another secret
    with pytest.raises(signing.NoMatchingSignature):
        signing.verify(signing.generate_secret(), headers, body)


@pytest.mark.parametrize(("name", "webhook", "error"), LIBRARIES, ids=library_ids)
@given(
    key=st.binary(min_size=24, max_size=64),
    msg_id=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
    timestamp=st.integers(min_value=0, max_value=4_102_444_800),  # up to 2100
    text=st.text(max_size=300),
)
def test_library_and_ours_sign_identically(
    name: str,
    webhook: Callable[[str], Any],
    error: type[Exception],
    key: bytes,
    msg_id: str,
    timestamp: int,
    text: str,
) -> None:
    secret = "whsec_" + base64.b64encode(key).decode()
    theirs = webhook(secret).sign(msg_id, datetime.fromtimestamp(timestamp, tz=UTC), text)

    assert theirs == signing.sign(secret, msg_id, timestamp, text.encode("utf-8"))
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": theirs}
    signing.verify(secret, headers, text.encode("utf-8"), now=timestamp)
