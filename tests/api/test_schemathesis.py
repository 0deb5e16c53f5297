"""Property-based runs of the published OpenAPI schema against the app itself.

Schemathesis loads ``/api/schema/`` from the in-process WSGI app and sends
what it generates: valid requests and invalid ones (its negative data: wrong
types, missing fields, out-of-range values), for every documented operation.
Every answer must be no 5xx and match the documentation (a documented status
code, content type and body schema), and no operation may answer 2xx
without a valid API key.

Two runs:

- per operation: each generated case is sent twice, with a tenant's key and
  with an operator key. Path parameters point at real rows (that tenant, an
  event type, an endpoint, a message and a delivery with an attempt), so
  requests reach the views' real work instead of stopping at a 404;
- stateful, along the schema's OpenAPI links (config.api.schema.add_links):
  a tenant created, then its endpoints made, read, rotated and deleted; a
  message published, read, its delivery read and replayed. It also checks
  that what was created can be read back and what was deleted answers 404.

The module prints how many cases ran, of each kind, and how many answers were
5xx, at the end of the run ("schemathesis: ...").
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from requests.structures import CaseInsensitiveDict
from schemathesis.checks import CheckContext, not_a_server_error, run_checks
from schemathesis.core.failures import FailureGroup, failure_report_title, format_failures
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ensure_resource_availability,
    ignored_auth,
    response_schema_conformance,
    status_code_conformance,
    use_after_free,
)

from config.wsgi import application
from deliveries import tasks
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
# Along links: a created resource can be read back, a deleted one answers 404.
STATEFUL_CHECKS = [*CHECKS, ensure_resource_availability, use_after_free]

# The suite's run is bounded and repeatable: a fixed seed, MAX_EXAMPLES cases per
# operation, STATEFUL_SCENARIOS link walks of up to STATEFUL_STEPS requests.
# HOOKPOST_SCHEMATHESIS_DEEP=1 explores further: random seeds, five times the
# cases, and Schemathesis' coverage phase (boundary values and every kind of
# invalid input for each parameter; several minutes).
DEEP = os.environ.get("HOOKPOST_SCHEMATHESIS_DEEP", "") == "1"
MAX_EXAMPLES = 15
STATEFUL_SCENARIOS = 12
STATEFUL_STEPS = 12
_SCALE = 5 if DEEP else 1

TENANT_UID = "acme"
EVENT_TYPE = "invoice.paid"
ENDPOINT_UID = "ep_01JSCHEMATHESIS00000000000"
MESSAGE_UID = "msg_01JSCHEMATHESIS0000000000"
DELIVERY_UID = "dlv_01JSCHEMATHESIS0000000000"
ATTEMPT_UID = "att_01JSCHEMATHESIS0000000000"


@dataclass
class Tally:
    """What the runs sent and got back, for the summary line."""

    cases: Counter[str] = field(default_factory=Counter)  # by generation mode
    statuses: Counter[int] = field(default_factory=Counter)
    links_followed: int = 0
    scenarios: int = 0

    def record(self, response: Response) -> None:
        self.statuses[response.status_code] += 1

    def count_case(self, case: schemathesis.Case) -> None:
        mode = case.meta.generation.mode.value if case.meta is not None else "explicit"
        self.cases[mode] += 1

    def summary(self) -> str:
        server_errors = sum(n for status, n in self.statuses.items() if status >= 500)
        modes = ", ".join(f"{n} {mode}" for mode, n in sorted(self.cases.items()))
        by_class = ", ".join(f"{n} {group}xx" for group, n in sorted(_by_class(self.statuses).items()))
        return (
            f"schemathesis: {sum(self.cases.values())} cases ({modes}), "
            f"{sum(self.statuses.values())} requests ({by_class}), {server_errors} answered 5xx; "
            f"stateful: {self.scenarios} scenarios, {self.links_followed} steps along links"
        )


def _by_class(statuses: Counter[int]) -> Counter[int]:
    grouped: Counter[int] = Counter()
    for status, n in statuses.items():
        grouped[status // 100] += n
    return grouped


TALLY = Tally()


@pytest.fixture(scope="module", autouse=True)
def _report(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print the tally once the module's runs are over, past pytest's output capture."""
    yield
    if not TALLY.statuses:
        return
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is None or reporter is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(TALLY.summary())


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
            endpoint = EndpointFactory.create(tenant=tenant, uid=ENDPOINT_UID)
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

    def reset(self) -> None:
        """Back to exactly the world, so that every scenario starts alike (Hypothesis replays them)."""
        Tenant.objects.exclude(uid=TENANT_UID).delete()
        Endpoint.objects.exclude(uid=ENDPOINT_UID).delete()
        Message.objects.exclude(uid=MESSAGE_UID).delete()
        Delivery.objects.all().delete()  # the world's own too: replays changed it
        EventType.objects.exclude(name=EVENT_TYPE).delete()
        self.ensure()


@pytest.fixture
def world(transactional_db: None, monkeypatch: pytest.MonkeyPatch) -> World:
    # transactional_db: the real WSGI handler closes the database connection
    # at each request start when it is inside a transaction (as the plain db
    # fixture's is). Accepted messages must not reach a real broker from
    # here: record the hand-off instead.
    enqueued: list[tuple[object, ...]] = []
    monkeypatch.setattr(tasks, "enqueue_fresh", lambda *args: enqueued.append(args))
    tenant = Tenant.objects.create(uid=TENANT_UID, name="Acme")
    _, tenant_key = services.api_key_create(tenant=tenant, name="schemathesis")
    _, operator_key = services.api_key_create(tenant=None, name="schemathesis-operator")
    state = World(tenant_key=tenant_key, operator_key=operator_key)
    state.ensure()
    return state


def _load_schema(mode: str, parameters: dict[str, str] | None = None) -> schemathesis.BaseSchema:
    """The schema as the running app serves it, generating data of ``mode`` (positive, negative, all)."""
    config = schemathesis.Config.from_dict(
        {"generation": {"mode": mode}, **({"parameters": parameters} if parameters else {})}
    )
    return schemathesis.openapi.from_wsgi("/api/schema/", application, config=config)


@pytest.fixture
def api_schema(world: World) -> schemathesis.BaseSchema:
    """Path parameters fixed to real rows."""
    return _load_schema(
        "all",
        {
            "path.uid": TENANT_UID,
            "path.name": EVENT_TYPE,
            "path.endpoint_id": ENDPOINT_UID,
            "path.message_id": MESSAGE_UID,
            "path.delivery_id": DELIVERY_UID,
        },
    )


schema = schemathesis.pytest.from_fixture("api_schema")


@settings(
    max_examples=MAX_EXAMPLES * _SCALE,
    deadline=None,
    derandomize=not DEEP,
    database=None,
    phases=[Phase.explicit, Phase.generate] if DEEP else [Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@schema.parametrize()
def test_api_conforms_to_its_schema(case: schemathesis.Case, world: World) -> None:
    # Every case goes out twice, with the tenant's key and with an operator
    # key: generating the cases costs far more than sending them.
    TALLY.count_case(case)
    for key in (world.tenant_key, world.operator_key):
        response = case.call_and_validate(headers={"Authorization": f"Bearer {key}"}, checks=CHECKS)
        TALLY.record(response)
        if case.method.upper() in ("DELETE", "PATCH"):
            world.ensure()


def _make_acceptable(case: schemathesis.Case) -> None:
    """Fix what valid data needs but the schema cannot say, so workflows get past validation.

    The schema allows any event type name (only existing ones are accepted),
    any JSON as a payload (only objects are), any string as a URL or a tenant
    uid; each would make a workflow's create a 422, and its links unused.
    """
    if case.method.upper() != "POST" or not isinstance(case.body, dict):
        return
    if case.path.endswith("/messages/"):
        _make_acceptable_message(case.body)
    elif case.path.endswith("/messages/batch/"):
        for message in case.body.get("messages") or []:
            if isinstance(message, dict):
                _make_acceptable_message(message)
    elif case.path.endswith("/endpoints/"):
        case.body["url"] = "https://receiver.example.com/hooks"
    elif case.path == "/api/v1/tenants/":
        uid = "".join(ch for ch in str(case.body.get("uid", "")).lower() if ch.isascii() and ch.isalnum())
        case.body["uid"] = f"t{uid[:63]}"


def _make_acceptable_message(message: dict[str, Any]) -> None:
    message["event_type"] = EVENT_TYPE
    if not isinstance(message.get("payload"), dict):
        message["payload"] = {}


def test_api_workflows_along_the_schema_links(world: World) -> None:
    # Valid data only: along a link the ids are given, and an invalid request
    # rarely has anything left to break (the per-operation run sends those).
    workflow = _load_schema("positive").as_state_machine()
    authorization = {"Authorization": f"Bearer {world.operator_key}"}

    class HookpostWorkflow(workflow):  # type: ignore[misc,valid-type]  # a class built from the schema at runtime
        """Each scenario starts from the world, as the operator (who may reach every tenant)."""

        def setup(self) -> None:
            world.reset()
            TALLY.scenarios += 1

        def before_call(self, case: schemathesis.Case) -> None:
            if self.recorder.find_parent(case_id=case.id) is None and "uid" in (case.path_parameters or {}):
                # A scenario's first request reaches the world's tenant; a random
                # uid is only ever a 404. Later ones take their ids from links.
                case.path_parameters["uid"] = TENANT_UID
            _make_acceptable(case)
            TALLY.count_case(case)

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"headers": dict(authorization)}

        def after_call(self, response: Response, case: schemathesis.Case) -> None:
            TALLY.record(response)
            if self.recorder.find_parent(case_id=case.id) is not None:
                TALLY.links_followed += 1

        def validate_response(
            self, response: Response, case: schemathesis.Case, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            # The recorder lets the stateful checks see the scenario so far
            # (what was created, what deleted); Case.validate_response has none.
            __tracebackhide__ = True
            self.recorder.record_response(case_id=case.id, response=response)
            ctx = CheckContext(
                override=None,
                auth=None,
                headers=CaseInsensitiveDict(kwargs.get("headers") or {}),
                config=case.operation.schema.config.checks_config_for(
                    operation=case.operation, phase="stateful"
                ),
                transport_kwargs=kwargs,
                recorder=self.recorder,
            )
            failures = run_checks(
                case=case,
                response=response,
                ctx=ctx,
                checks=STATEFUL_CHECKS,
                on_failure=lambda _, collected, failure: collected.add(failure),
            )
            if failures:
                found = list(failures)
                message = (
                    failure_report_title(found)
                    + "\n"
                    + format_failures(
                        case_id=None,
                        response=response,
                        failures=found,
                        curl=case.as_curl_command(headers=dict(response.request.headers)),
                        config=case.operation.schema.config.output,
                    )
                )
                raise FailureGroup(found, message) from None

    HookpostWorkflow.run(
        settings=settings(
            max_examples=STATEFUL_SCENARIOS * _SCALE,
            stateful_step_count=STATEFUL_STEPS,
            deadline=None,
            derandomize=not DEEP,
            database=None,
            phases=[Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        )
    )
