"""Fixtures of the API tests."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.helpers import World, build_world
from webhooks.models import EventType, Tenant


@pytest.fixture
def world(tenant: Tenant, event_type: EventType) -> World:
    """``acme`` with one endpoint, one published message, its delivery and an attempt."""
    return build_world(tenant, event_type)


@pytest.fixture
def no_allowlist(settings: Any) -> None:
    """The production target policy: no network bypasses the private-address block."""
    settings.HOOKPOST_ALLOWED_TARGET_NETWORKS = []
