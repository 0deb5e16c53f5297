"""Property-based test of the admin's change lists: whatever the query string
holds (filter values, page numbers, orderings, other scripts' digits, huge
numbers, NUL), a list answers a page, a redirect or a 400, never a 500.

Django's test client re-raises a view's exception, so a failing example
shows its traceback."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

import pytest
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.admin.conftest import History
from webhooks.models import Membership

LISTS = [
    "admin:webhooks_tenant_changelist",
    "admin:webhooks_membership_changelist",
    "admin:webhooks_apikey_changelist",
    "admin:webhooks_eventtype_changelist",
    "admin:webhooks_endpoint_changelist",
    "admin:deliveries_delivery_changelist",
    "admin:deliveries_deadletter_changelist",
    "admin:deliveries_attempt_changelist",
    "admin:deliveries_message_changelist",
]
PARAMS = [
    "p",
    "q",
    "o",
    "endpoint",
    "tenant",
    "status__exact",
    "trigger__exact",
    "event_type__id__exact",
    "created_at__gte",
    "created_at__lt",
    "enabled__exact",
    "circuit_state__exact",
    "archived__exact",
    "role__exact",
    "revoked_at__isnull",
]
VALUES = st.one_of(
    st.text(st.sampled_from(list("0123456789-+._ eE:%\t\x00\u00a0²³٣१")), max_size=20),
    st.text(max_size=30),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.just("9" * 5000),
    st.sampled_from(
        ["succeeded", "dead", "scheduled", "open", "1", "0", "True", "2024-01-01 00:00:00+00:00"]
    ),
)
PROPERTY_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _query(params: dict[str, str]) -> str:
    return "&".join(f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in params.items())


@PROPERTY_SETTINGS
@given(name=st.sampled_from(LISTS), params=st.dictionaries(st.sampled_from(PARAMS), VALUES, max_size=3))
def test_property_operator_change_lists_never_answer_500(
    operator: Client, a: History, b: History, name: str, params: dict[str, str]
) -> None:
    response = operator.get(f"{reverse(name)}?{_query(params)}")

    assert response.status_code in (200, 302, 400), response.status_code


@pytest.fixture
def viewer(login: Callable[..., Client], a: History, b: History) -> Client:
    """A viewer of both tenants: the tenant filter is offered and read."""
    return login(a.tenant, b.tenant, role=Membership.Role.VIEWER)


@PROPERTY_SETTINGS
@given(name=st.sampled_from(LISTS[4:]), params=st.dictionaries(st.sampled_from(PARAMS), VALUES, max_size=3))
def test_property_viewer_change_lists_never_answer_500(
    viewer: Client, name: str, params: dict[str, str]
) -> None:
    response = viewer.get(f"{reverse(name)}?{_query(params)}")

    assert response.status_code in (200, 302, 400), response.status_code
