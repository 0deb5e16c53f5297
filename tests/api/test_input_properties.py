"""Property-based tests of the API's edge: whatever a client puts in the query
string or the headers, the answer is never a 5xx and never an exception.

Query values and header values are drawn from text that breaks naive parsers:
digits of other scripts (``²`` passes ``str.isdigit()``, ``٣`` passes
``int()``), huge numbers, signs, exponents, NUL and other control characters,
invalid percent-encoded UTF-8, and strings long enough to matter. Every
request runs inside the test's one database transaction, against one tenant's
rows built once per test.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from tests.api.helpers import World, assert_error, build_world

# A failing case must be reproducible from the report, so the database is never shrunk away.
PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

_TRICKY = list("0123456789-+._ eE:TZ\t\x00\x7f²³¹٣०௫໒߃𝟡١⁹½ⅷ％")  # noqa: RUF001 (other scripts' digits on purpose)
HOSTILE_TEXT = st.one_of(
    st.text(st.sampled_from(_TRICKY), max_size=30),
    st.text(max_size=40),
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.just("9" * 5000),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from(["2024-01-01T00:00:00+99:99", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]),
    st.sampled_from(["pending", "succeeded", "failed", "dead", "skipped", "invoice.paid", "ep_x", "msg_x"]),
)
LIST_PARAMS = ["limit", "cursor", "status", "after", "before", "event_type", "endpoint", "message"]
LISTS = [
    "/api/v1/tenants/acme/messages/",
    "/api/v1/tenants/acme/deliveries/",
    "/api/v1/tenants/acme/endpoints/",
    "/api/v1/event-types/",
    "/api/v1/tenants/",
]


def _assert_answered(response: Any) -> None:
    """No 5xx; an error is in the envelope, as every API error is."""
    assert response.status_code < 500, (response.status_code, response.content[:500])
    if response.status_code >= 400:
        assert_error(response, response.status_code)


@pytest.fixture
def world_(tenant: Any, event_type: Any) -> World:
    return build_world(tenant, event_type)


@pytest.fixture
def operator_key(operator_api: APIClient) -> APIClient:
    return operator_api


@PROPERTY_SETTINGS
@given(
    path=st.sampled_from(LISTS),
    params=st.dictionaries(
        st.one_of(st.sampled_from(LIST_PARAMS), st.text(min_size=1, max_size=8)), HOSTILE_TEXT, max_size=4
    ),
)
def test_property_list_query_parameters_never_answer_500(
    operator_key: APIClient, world_: World, path: str, params: dict[str, str]
) -> None:
    response = operator_key.get(path, params)

    _assert_answered(response)


@PROPERTY_SETTINGS
@given(
    path=st.sampled_from(LISTS[:2]),
    name=st.sampled_from(LIST_PARAMS),
    raw=st.binary(max_size=24),
)
def test_property_raw_percent_encoded_bytes_never_answer_500(
    api: APIClient, world_: World, path: str, name: str, raw: bytes
) -> None:
    # Bytes that are not UTF-8 (%FF, %C2 alone, overlong forms) reach the parser as U+FFFD.
    response = api.get(f"{path}?{name}={quote_from_bytes(raw, safe='')}")

    _assert_answered(response)


# What a WSGI server hands over as a header value: the raw bytes read as Latin-1
# (so UTF-8 arrives as mojibake), without CR or LF, which end a header line.
HEADER_VALUES = st.one_of(
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
    st.text(max_size=40).map(lambda t: t.encode("utf-8").decode("latin-1")),
    HOSTILE_TEXT.map(lambda t: t.encode("utf-8").decode("latin-1")),
).map(lambda value: value.replace("\r", "").replace("\n", ""))
HEADERS = {
    "Idempotency-Key": "HTTP_IDEMPOTENCY_KEY",
    "Content-Length": "CONTENT_LENGTH",
    "Content-Type": "CONTENT_TYPE",
    "X-Request-ID": "HTTP_X_REQUEST_ID",
    "Accept": "HTTP_ACCEPT",
    "Retry-After": "HTTP_RETRY_AFTER",
    "If-None-Match": "HTTP_IF_NONE_MATCH",
    "Range": "HTTP_RANGE",
}


@PROPERTY_SETTINGS
@given(
    request=st.sampled_from(
        [
            ("get", "/api/v1/tenants/acme/deliveries/"),
            ("post", "/api/v1/tenants/acme/messages/"),
            ("post", "/api/v1/tenants/acme/messages/batch/"),
        ]
    ),
    headers=st.dictionaries(st.sampled_from(sorted(HEADERS)), HEADER_VALUES, min_size=1, max_size=3),
)
def test_property_header_values_never_answer_500(
    api: APIClient, world_: World, request: tuple[str, str], headers: dict[str, str]
) -> None:
    method, path = request
    extra: dict[str, Any] = {HEADERS[name]: value for name, value in headers.items()}
    if method == "get":
        response = api.get(path, **extra)
    else:
        body = (
            b'{"event_type": "invoice.paid", "payload": {"n": 1}}'
            if path.endswith("messages/")
            else b'{"messages": [{"event_type": "invoice.paid", "payload": {"n": 1}}]}'
        )
        extra.setdefault("CONTENT_TYPE", "application/json")
        response = api.generic("POST", path, body, **extra)  # type: ignore[arg-type]  # bytes go as they are; the stubs say str

    _assert_answered(response)


@pytest.mark.parametrize("declared", ["²", "٣", "-1", "+5", " 5", "1e3", "9" * 5000])
def test_an_unreadable_content_length_is_not_a_500(api: APIClient, world_: World, declared: str) -> None:
    # Django and DRF read such a length as 0 (or as another script's digits);
    # the parser then reads the body with its own cap, whatever was declared.
    response = api.generic(
        "POST",
        "/api/v1/tenants/acme/messages/",
        b'{"event_type": "invoice.paid", "payload": {}}',  # type: ignore[arg-type]  # as above
        content_type="application/json",
        CONTENT_LENGTH=declared,
    )

    assert 400 <= response.status_code < 500, response.content
    assert_error(response, response.status_code)


def test_a_huge_declared_content_length_is_413(api: APIClient, world_: World) -> None:
    response = api.generic(
        "POST",
        "/api/v1/tenants/acme/messages/",
        b"{}",  # type: ignore[arg-type]  # as above
        content_type="application/json",
        CONTENT_LENGTH="9" * 40,
    )

    assert_error(response, 413)
