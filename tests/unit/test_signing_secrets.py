"""Endpoint secrets: ``whsec_`` + base64 of 24-64 random bytes."""

from __future__ import annotations

import base64
import os

import pytest

from webhooks.signing import InvalidSecret, decode_secret, generate_secret


def _encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def test_generated_secret_is_prefixed_base64_of_32_random_bytes() -> None:
    secret = generate_secret()

    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32


def test_generated_secrets_differ() -> None:
    assert len({generate_secret() for _ in range(20)}) == 20


@pytest.mark.parametrize("size", [23, 65])
def test_generate_refuses_sizes_outside_24_to_64_bytes(size: int) -> None:
    with pytest.raises(ValueError):
        generate_secret(size)


def test_decode_returns_the_key_with_or_without_prefix() -> None:
    raw = os.urandom(32)

    assert decode_secret("whsec_" + _encode(raw)) == raw
    assert decode_secret(_encode(raw)) == raw


def test_decode_round_trips_a_generated_secret() -> None:
    secret = generate_secret()

    assert decode_secret(secret) == base64.b64decode(secret.removeprefix("whsec_"))


@pytest.mark.parametrize("size", [24, 64])
def test_decode_accepts_the_size_limits(size: int) -> None:
    raw = os.urandom(size)

    assert decode_secret("whsec_" + _encode(raw)) == raw


@pytest.mark.parametrize(
    "secret",
    [
        "whsec_not base64!",
        # fixed bytes: the ids stay the same in every xdist worker
        "whsec_" + _encode(bytes(range(32)))[:-1],  # broken padding
        "whsec_" + _encode(bytes(range(32))).replace("=", "") + "$",
    ],
)
def test_decode_rejects_bad_base64(secret: str) -> None:
    with pytest.raises(InvalidSecret, match="base64"):
        decode_secret(secret)


@pytest.mark.parametrize("size", [23, 65])
def test_decode_rejects_wrong_lengths(size: int) -> None:
    with pytest.raises(InvalidSecret, match=str(size)):
        decode_secret("whsec_" + _encode(os.urandom(size)))


def test_decode_rejects_an_empty_secret() -> None:
    with pytest.raises(InvalidSecret):
        decode_secret("whsec_")
