"""Property-based run of the published OpenAPI schema against the app itself.

Schemathesis loads ``/api/schema/`` from the in-process WSGI app, generates
valid and invalid requests for every documented operation and checks that
the answer is never a 5xx and matches the documentation: a documented status
code, the documented content type and the documented body schema; and that
no operation answers 2xx without a valid API key.

Every generated case is sent twice: with a tenant's key and with an operator
key. Path parameters point at real rows (that tenant, an event type, an
endpoint, a message and a delivery with an attempt), so requests reach the
views' real work instead of stopping at a 404. Rows a request deleted or
archived (``DELETE`` of the endpoint or tenant, ``PATCH`` of the event type)
are put back before the next request, with the same ids.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_schema_conformance,
    status_code_conformance,
)

from config.wsgi import application
from deliveries import dispatch
from deliveries.models import Attempt, Delivery, Message
from tests.factories import EndpointFactory
from webhooks import services
from webhooks.api_keys import hash_api_key, shown_prefix
from webhooks.models import ApiKey, Endpoint, EventType, Tenant

pytestmark = pytest.mark.schemathesis

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    ignored_auth,  # each 2xx is re-sent without a key and with a bad one: both must be 401
]
MAX_EXAMPLES = 20

TENANT_UID = "acme"
EVENT_TYPE = "invoice.paid"
ENDPOINT_UID = "ep_01JSCHEMATHESIS00000000000"
MESSAGE_UID = "msg_01JSCHEMATHESIS0000000000"
DELIVERY_UID = "dlv_01JSCHEMATHESIS0000000000"
ATTEMPT_UID = "att_01JSCHEMATHESIS0000000000"


@dataclass
class World:
    """The rows the generated requests address, and the raw API keys."""

    tenant_key: str
    operator_key: str

    def ensure(self) -> None:
        """Put back whatever an earlier request deleted or archived."""
        tenant, _ = Tenant.objects.get_or_create(uid=TENANT_UID, defaults={"name": "Acme"})
        if not ApiKey.objects.filter(key_hash=hash_api_key(self.tenant_key)).exists():
            # Deleting the tenant deleted its key too; restore the same key.
            ApiKey.objects.create(
                tenant=tenant,
                name="schemathesis",
                prefix=shown_prefix(self.tenant_key),
                key_hash=hash_api_key(self.tenant_key),
            )
        event_type, _ = EventType.objects.get_or_create(name=EVENT_TYPE)
        if event_type.archived or event_type.schema is not None:
            EventType.objects.filter(pk=event_type.pk).update(archived=False, schema=None)
        endpoint = Endpoint.objects.filter(uid=ENDPOINT_UID).first()
        if endpoint is None:
            endpoint = EndpointFactory(tenant=tenant, uid=ENDPOINT_UID)
        message = Message.objects.filter(tenant=tenant, uid=MESSAGE_UID).first()
        if message is None:
            message = Message.objects.create(
                tenant=tenant, event_type=event_type, uid=MESSAGE_UID, payload={"amount": 1}
            )
        if not Delivery.objects.filter(uid=DELIVERY_UID).exists():
            delivery = Delivery.objects.create(
                uid=DELIVERY_UID,
                tenant=tenant,
                message=message,
                endpoint=endpoint,
                event_type=event_type,
                status=Delivery.Status.FAILED,
                attempt_count=1,
                last_status_code=500,
                last_error="HTTP 500",
            )
            Attempt.objects.create(
                uid=ATTEMPT_UID,
                delivery=delivery,
                number=1,
                duration_ms=12,
                request_headers={"webhook-id": MESSAGE_UID, "webhook-signature": "[redacted]"},
                response_status=500,
                response_headers={"content-type": "text/plain"},
                response_body="oops",
            )


@pytest.fixture
def world(transactional_db: None, monkeypatch: pytest.MonkeyPatch) -> World:
    # transactional_db: the real WSGI handler closes the database connection
    # at each request start when it is inside a transaction (as the plain db
    # fixture's is). Accepted messages must not reach a real broker from
    # here: record the hand-off instead.
    enqueued: list[tuple[object, ...]] = []
    monkeypatch.setattr(dispatch, "_enqueuer", lambda *args: enqueued.append(args))
    tenant = Tenant.objects.create(uid=TENANT_UID, name="Acme")
    _, tenant_key = services.api_key_create(tenant=tenant, name="schemathesis")
    _, operator_key = services.api_key_create(tenant=None, name="schemathesis-operator")
    state = World(tenant_key=tenant_key, operator_key=operator_key)
    state.ensure()
    return state


@pytest.fixture
def api_schema(world: World) -> schemathesis.BaseSchema:
    """The schema as the running app serves it, with path parameters fixed to real rows."""
    config = schemathesis.Config.from_dict(
        {
            "parameters": {
                "path.uid": TENANT_UID,
                "path.name": EVENT_TYPE,
                "path.endpoint_id": ENDPOINT_UID,
                "path.message_id": MESSAGE_UID,
                "path.delivery_id": DELIVERY_UID,
            }
        }
    )
    return schemathesis.openapi.from_wsgi("/api/schema/", application, config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


# The suite's run is bounded and repeatable: MAX_EXAMPLES generated cases per
# operation from a fixed seed. HOOKPOST_SCHEMATHESIS_DEEP=1 explores further:
# random seeds, more cases, and Schemathesis' coverage phase (boundary values
# and every kind of invalid input for each parameter; several minutes).
DEEP = os.environ.get("HOOKPOST_SCHEMATHESIS_DEEP", "") == "1"
_SETTINGS = settings(
    max_examples=MAX_EXAMPLES * 5 if DEEP else MAX_EXAMPLES,
    deadline=None,
    derandomize=not DEEP,
    database=None,
    phases=[Phase.explicit, Phase.generate] if DEEP else [Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@_SETTINGS
@schema.parametrize()
def test_api_conforms_to_its_schema(case: schemathesis.Case, world: World) -> None:
    # Every case goes out twice, with the tenant's key and with an operator
    # key: generating the cases costs far more than sending them.
    for key in (world.tenant_key, world.operator_key):
        headers = {"Authorization": f"Bearer {key}"}
        case.call_and_validate(headers=headers, checks=CHECKS)
        if case.method.upper() in ("DELETE", "PATCH"):
            world.ensure()
