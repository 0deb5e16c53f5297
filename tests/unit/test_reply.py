"""What a receiver's reply becomes when stored (``deliveries.reply``): storable
text whatever the bytes, with the bytes recoverable from the excerpt."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deliveries import reply
from deliveries.models import Attempt
from tests.factories import DeliveryFactory

_ESCAPED_BYTE = re.compile(r"\\x([0-9a-f]{2})")


def _bytes_of(excerpt: str) -> bytes:
    """The bytes an excerpt stands for (the module docstring's contract)."""
    out, at = bytearray(), 0
    for match in _ESCAPED_BYTE.finditer(excerpt):
        out += excerpt[at : match.start()].encode("utf-8") + bytes([int(match.group(1), 16)])
        at = match.end()
    return bytes(out + excerpt[at:].encode("utf-8"))


def _storable(value: str) -> bool:
    """No NUL (PostgreSQL text and jsonb refuse it) and encodable as UTF-8 (no lone surrogates)."""
    value.encode("utf-8")
    return "\x00" not in value


@given(st.binary(max_size=300).filter(lambda b: b"\\" not in b))
def test_any_body_becomes_storable_text_the_bytes_can_be_read_back_from(body: bytes) -> None:
    excerpt = reply.excerpt(body, limit=1000)

    assert _storable(excerpt)
    assert _bytes_of(excerpt) == body


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"ok": true}', '{"ok": true}'),
        ("Zoë ✓".encode(), "Zoë ✓"),
        (b"ok\x00thanks", "ok\\x00thanks"),
        (b"caf\xe9 \xff", "caf\\xe9 \\xff"),
        (b"GIF89a\x01\x00", "GIF89a\x01\\x00"),
    ],
)
def test_text_reads_as_itself_and_other_bytes_as_escapes(body: bytes, expected: str) -> None:
    assert reply.excerpt(body, limit=1000) == expected


def test_the_excerpt_is_capped_in_bytes_and_a_cut_character_shows_as_its_bytes() -> None:
    assert reply.excerpt(b"abcdef", limit=3) == "abc"
    assert reply.excerpt("aé".encode(), limit=2) == "a\\xc3"


@given(st.lists(st.tuples(st.text(max_size=40), st.text(max_size=200)), max_size=80))
def test_any_headers_become_storable_and_capped(fields: list[tuple[str, str]]) -> None:
    stored = reply.headers(fields)

    assert len(stored) <= reply.MAX_HEADERS
    for name, value in stored.items():
        assert _storable(name) and _storable(value)
        assert name == name.lower() and len(name) <= reply.MAX_NAME and len(value) <= reply.MAX_VALUE


def test_headers_are_lowercased_joined_escaped_and_cut() -> None:
    raw = "😀 café".encode().decode("latin-1")  # as http.client hands header bytes over
    fields = [
        ("Set-Cookie", "a=1"),
        ("X-Note", "a\x00b"),
        ("set-cookie", "b=2"),
        ("X-Emoji", raw),
        ("X-Big", "h" * 5000),
    ]

    stored = reply.headers(fields)

    assert stored["set-cookie"] == "a=1, b=2"
    assert stored["x-note"] == "a\\x00b"
    assert stored["x-emoji"] == raw and stored["x-emoji"].encode("latin-1") == "😀 café".encode()
    assert stored["x-big"] == "h" * (reply.MAX_VALUE - 1) + reply.CUT
    assert list(stored) == ["set-cookie", "x-note", "x-emoji", "x-big"]


def test_at_most_max_headers_are_kept_the_first_ones() -> None:
    stored = reply.headers([(f"X-{i}", "v") for i in range(reply.MAX_HEADERS + 10)])

    assert list(stored) == [f"x-{i}" for i in range(reply.MAX_HEADERS)]


def test_text_escapes_nul_and_lone_surrogates_and_is_capped() -> None:
    assert reply.text("bad\x00line") == "bad\\x00line"
    assert reply.text("half \udcff pair") == "half \\udcff pair"
    assert len(reply.text("x" * 5000)) == reply.MAX_TEXT


@pytest.mark.django_db
def test_the_worst_of_it_is_stored_by_postgresql() -> None:
    # given a reply with every kind of byte, NUL in header names and values, and a surrogate
    body = bytes(range(256)) * 4
    fields = [("X-\x00", "\x00\x01\x7f\xff"), ("X-Surrogate", "\udc80"), ("X-Big", "v" * 70_000)]

    # when it is stored as an attempt's reply
    attempt = Attempt.objects.create(
        delivery=DeliveryFactory.create(),
        number=1,
        response_status=200,
        response_body=reply.excerpt(body, limit=4096),
        response_headers=reply.headers(fields),
        error_message=reply.text("BadStatusLine('\x00\udcff')"),
    )

    # then PostgreSQL took it, and the body reads back to its bytes
    attempt.refresh_from_db()
    assert _bytes_of(attempt.response_body) == body  # (its backslashes precede "]", not "x")
    assert attempt.response_headers["x-\\x00"] == "\\x00\x01\x7f\xff"
