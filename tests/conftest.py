"""Shared fixtures: tenants, keys and authenticated API clients."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from bench import process_groups
from tests.factories import EventTypeFactory, TenantFactory
from webhooks import services
from webhooks.models import ApiKey, EventType, Tenant

# Samples the suite's PostgreSQL connections and fails a run that exceeds its budget.
pytest_plugins = ["tests.pg_budget"]

# Tests that start processes (workers, servers, browsers, the bench) run one after
# another in one xdist worker, as without xdist: their bounds on time and connections
# assume the machine is theirs. The other tests share the other worker(s).
PROCESS_TEST_DIRS = ("e2e", "bench", "browser")


@pytest.hookimpl(tryfirst=True)  # before xdist's, which reads the group into the node id
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.parent.name in PROCESS_TEST_DIRS:
            item.add_marker(pytest.mark.xdist_group("processes"))


def pytest_configure(config: pytest.Config) -> None:
    # SIGTERM ends the session as Ctrl-C does, tearing down every fixture: what the
    # tests started is stopped (bench/process_groups.py).
    process_groups.exit_on_sigterm()


@dataclass
class KeyedClient:
    """An APIClient that sends ``Authorization: Bearer <raw>``."""

    client: APIClient
    key: ApiKey
    raw: str


@pytest.fixture
def make_client(db: None) -> Callable[[Tenant | None], KeyedClient]:
    """Factory: ``make_client(tenant)`` for a tenant key, ``make_client(None)`` for operator."""

    def make(tenant: Tenant | None) -> KeyedClient:
        key, raw = services.api_key_create(tenant=tenant, name="test")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        return KeyedClient(client=client, key=key, raw=raw)

    return make


@pytest.fixture
def tenant(db: None) -> Tenant:
    return TenantFactory.create(uid="acme")


@pytest.fixture
def other_tenant(db: None) -> Tenant:
    return TenantFactory.create(uid="globex")


@pytest.fixture
def event_type(db: None) -> EventType:
    return EventTypeFactory.create(name="invoice.paid")


@pytest.fixture
def api(make_client: Callable[[Tenant | None], KeyedClient], tenant: Tenant) -> APIClient:
    """A client holding a key of ``tenant``."""
    return make_client(tenant).client


@pytest.fixture
def operator_api(make_client: Callable[[Tenant | None], KeyedClient]) -> APIClient:
    return make_client(None).client


@pytest.fixture
def anon_api() -> APIClient:
    return APIClient()
