"""Writes of the runtime domain: ingest (publish a message and fan it out).

Ingest is one transaction: the Message and all its Delivery rows are written
together or not at all, and the first attempts are handed to the delivery
engine only after commit. The 202 the API returns means "durable in
PostgreSQL".
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from jsonschema import Draft202012Validator
from referencing.exceptions import Unresolvable

from deliveries import dispatch
from deliveries.copy_insert import copy_insert
from deliveries.fanout import deliveries_for, delivery_rows, matching_endpoints
from deliveries.lanes import Lane, lane_of_fresh
from deliveries.leases import new_token
from deliveries.models import Attempt, Delivery, Message
from webhooks.errors import Conflict, Invalid, PayloadTooLarge
from webhooks.models import Endpoint, EventType, Tenant

MESSAGE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
# ``…/messages/batch/`` is a route, so a message with that id could never be read.
RESERVED_MESSAGE_IDS = frozenset({"batch"})
MAX_SCHEMA_ERRORS = 10


@dataclass(frozen=True)
class NewMessage:
    """One message as a publisher sent it."""

    event_type: str
    payload: Any
    uid: str | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True)
class Published:
    """Result of publishing one message; ``created`` is False for a repeat."""

    message: Message
    created: bool
    delivery_count: int


@dataclass
class _Context:
    """Per-request caches, so a batch does not repeat the same lookups."""

    tenant: Tenant
    event_types: dict[str, EventType | None] = field(default_factory=dict)
    endpoints: dict[int, list[Endpoint]] = field(default_factory=dict)


def message_publish(*, tenant: Tenant, new: NewMessage) -> Published:
    """Publish one message: validate, store it with its deliveries, enqueue after commit.

    A repeat (same ``idempotency_key`` or same ``uid``) with the same content
    returns the original message and creates nothing; with different content
    it raises Conflict. Raises Invalid (unknown/archived event type, payload
    not an object or against the schema, bad id) and PayloadTooLarge.
    """
    context = _Context(tenant=tenant)
    with transaction.atomic():
        [result] = _publish(context, [(new, _check_message(context, new))], name_items=False)
    return result


def message_publish_batch(*, tenant: Tenant, batch: list[NewMessage]) -> list[Published]:
    """Publish up to ``HOOKPOST_MAX_BATCH_MESSAGES`` messages, all or none.

    Errors name the item: ``messages.3.payload``. The batch is one
    transaction and one hand-off to the workers (see ``_publish``).
    """
    limit = settings.HOOKPOST_MAX_BATCH_MESSAGES
    if not 1 <= len(batch) <= limit:
        raise Invalid("The batch is invalid.", {"messages": [f"Send 1 to {limit} messages."]})
    context = _Context(tenant=tenant)
    items: list[tuple[NewMessage, EventType]] = []
    with transaction.atomic():
        for index, new in enumerate(batch):
            try:
                items.append((new, _check_message(context, new)))
            except (Invalid, PayloadTooLarge) as exc:
                raise _item_error(exc, index) from exc
        return _publish(context, items, name_items=True)


def _item_error(exc: Invalid | Conflict | PayloadTooLarge, index: int) -> Exception:
    """``exc`` about item ``index`` of a batch, with the item in its message and field names."""
    if isinstance(exc, PayloadTooLarge):
        return PayloadTooLarge(f"Message {index}: {exc.message}", exc.details)
    return type(exc)(
        f"Message {index} is invalid: {exc.message}",
        {f"messages.{index}.{name}": msgs for name, msgs in exc.details.items()},
    )


def _publish(
    context: _Context, items: list[tuple[NewMessage, EventType]], *, name_items: bool
) -> list[Published]:
    """Store checked messages with their deliveries and queue them after commit; a result per item.

    The cost is per request, not per message: new messages without an id or
    idempotency key are written together, all deliveries together too (each
    a COPY, or an INSERT for a few rows: ``deliveries.copy_insert``), and the
    pending ones are handed to the workers together, each with its lane
    (``dispatch.Route``), so nothing is read back to route them. First-lane
    work is written under one dispatch lease, so the scheduler leaves it to
    the hand-off; retry-lane work (an endpoint failing or never yet
    successful) is written unleased, the scheduler's from the start: the
    hand-off queues it only if the retry queue has room, and otherwise
    leaves it as it is, with no write to give a lease back.

    A message with an id or key is written on its own in a savepoint, since
    a concurrent twin may win its insert (then it is a repeat); a batch
    holding any such message writes every message that way, in order.
    """
    keyed = any(new.uid is not None or new.idempotency_key is not None for new, _ in items)
    slots: list[Message | Published] = []  # a Message: created here, counted below
    for index, (new, event_type) in enumerate(items):
        request_hash = _request_hash(new)
        if not keyed:
            slots.append(_unsaved_message(context.tenant, new, event_type, request_hash))
            continue
        try:
            slots.append(_publish_keyed(context.tenant, new, event_type, request_hash))
        except Conflict as exc:
            raise (_item_error(exc, index) if name_items else exc) from exc
    created = [slot for slot in slots if isinstance(slot, Message)]
    if not keyed:
        _insert_messages(created)
    token = new_token()
    rows: list[dict[str, Any]] = []
    routes: dict[int, dispatch.Route] = {}  # by endpoint pk
    retry_lane: set[int] = set()  # endpoint pks
    for message in created:
        endpoints = _endpoints(context, message)
        for endpoint in endpoints:
            if endpoint.enabled and endpoint.pk not in routes:
                routes[endpoint.pk] = route = dispatch.Route(endpoint.uid, lane_of_fresh(endpoint))
                if route.lane is Lane.RETRY:
                    retry_lane.add(endpoint.pk)
        rows += delivery_rows(message=message, endpoints=endpoints, lease_token=token, unleased=retry_lane)
    ids = copy_insert(Delivery, rows, return_ids=True)
    first: dict[int, dispatch.Route] = {}
    later: dict[int, dispatch.Route] = {}
    for pk, row in zip(ids, rows, strict=True):
        if row["status"] == Delivery.Status.PENDING:
            route = routes[row["endpoint_id"]]
            (first if route.lane is Lane.FIRST else later)[pk] = route
    dispatch.enqueue_on_commit(list(first), token, first)
    dispatch.enqueue_on_commit(list(later), None, later)
    counts: dict[int, int] = {}
    for row in rows:
        counts[row["message_id"]] = counts.get(row["message_id"], 0) + 1
    return [
        Published(message=slot, created=True, delivery_count=counts.get(slot.pk, 0))
        if isinstance(slot, Message)
        # A repeat of a message created earlier in this request: its deliveries were
        # written after the repeat was found, so count them now.
        else Published(message=slot.message, created=False, delivery_count=counts[slot.message.pk])
        if slot.message.pk in counts
        else slot
        for slot in slots
    ]


def _insert_messages(messages: list[Message]) -> None:
    """INSERT new messages together (``copy_insert``); each instance gets its id, as if saved."""
    fields = [f.attname for f in Message._meta.local_concrete_fields if not f.primary_key]
    rows = [{name: getattr(m, name) for name in fields} for m in messages]
    ids = copy_insert(Message, rows, return_ids=True)
    for message, pk in zip(messages, ids, strict=True):
        message.pk = pk
        message._state.adding = False
        message._state.db = connection.alias


def _unsaved_message(tenant: Tenant, new: NewMessage, event_type: EventType, request_hash: str) -> Message:
    return Message(
        tenant=tenant,
        event_type=event_type,
        payload=new.payload,
        idempotency_key=new.idempotency_key,
        request_hash=request_hash,
        **({"uid": new.uid} if new.uid else {}),
    )


def _publish_keyed(
    tenant: Tenant, new: NewMessage, event_type: EventType, request_hash: str
) -> Message | Published:
    """Insert a message that has an id or key: the new Message, or the repeat it is.

    Raises Conflict when the id or key was used for different content.
    """
    existing = _find_repeat(tenant, new)
    if existing is not None:
        return _repeat(existing, request_hash)
    message = _unsaved_message(tenant, new, event_type, request_hash)
    try:
        with transaction.atomic():  # savepoint: a concurrent twin may win the insert
            message.save(force_insert=True)
    except IntegrityError:
        existing = _find_repeat(tenant, new)
        if existing is None:
            raise
        return _repeat(existing, request_hash)
    return message


def _endpoints(context: _Context, message: Message) -> list[Endpoint]:
    """The endpoints that get ``message`` (looked up once per event type per request)."""
    endpoints = context.endpoints.get(message.event_type_id)
    if endpoints is None:
        endpoints = list(matching_endpoints(tenant=context.tenant, event_type=message.event_type))
        context.endpoints[message.event_type_id] = endpoints
    return endpoints


def _check_message(context: _Context, new: NewMessage) -> EventType:
    errors: dict[str, list[str]] = {}
    if new.uid is not None and not MESSAGE_ID_PATTERN.match(new.uid):
        errors["id"] = ["Use 1-64 letters, digits, '_', '-', '.' or ':'."]
    elif new.uid in RESERVED_MESSAGE_IDS:
        errors["id"] = [f"{new.uid!r} is reserved (it names an API route)."]
    key = new.idempotency_key
    if key is not None and (not 1 <= len(key) <= 255 or "\x00" in key):
        errors["idempotency_key"] = ["Use 1-255 characters, without NUL."]
    if new.event_type not in context.event_types:
        context.event_types[new.event_type] = EventType.objects.filter(name=new.event_type).first()
    event_type = context.event_types[new.event_type]
    if event_type is None:
        errors["event_type"] = [f"Unknown event type {new.event_type!r}."]
    elif event_type.archived:
        errors["event_type"] = [f"The event type {new.event_type!r} is archived."]
    if not isinstance(new.payload, dict):
        errors["payload"] = ["Must be a JSON object."]
    if errors:
        raise Invalid("The message is invalid.", errors)
    assert event_type is not None
    size = len(_canonical(new.payload))
    limit = settings.HOOKPOST_MAX_PAYLOAD_BYTES
    if size > limit:
        raise PayloadTooLarge(
            f"The payload is {size} bytes; the limit is {limit}.",
            {"payload": [f"At most {limit} bytes of JSON."]},
        )
    if event_type.schema:
        try:
            problems = [
                f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
                for error in Draft202012Validator(event_type.schema).iter_errors(new.payload)
            ]
        except (RecursionError, Unresolvable) as exc:
            # The schema is unusable (an endless or unresolvable reference) or
            # the payload too deep for it: refuse clearly instead of a 500.
            raise Invalid(
                f"The payload cannot be checked against the schema of {event_type.name!r}.",
                {"payload": ["The schema cannot be applied to it; an operator must fix the schema."]},
            ) from exc
        if problems:
            raise Invalid(
                f"The payload does not match the schema of {event_type.name!r}.",
                {"payload": problems[:MAX_SCHEMA_ERRORS]},
            )
    return event_type


def _find_repeat(tenant: Tenant, new: NewMessage) -> Message | None:
    condition = Q()
    if new.idempotency_key is not None:
        condition |= Q(idempotency_key=new.idempotency_key)
    if new.uid is not None:
        condition |= Q(uid=new.uid)
    if not condition:
        return None
    return Message.objects.filter(tenant=tenant).filter(condition).select_related("event_type").first()


def _repeat(existing: Message, request_hash: str) -> Published:
    if existing.request_hash != request_hash:
        raise Conflict(
            "This idempotency key or message id was already used for a different message.",
            {"idempotency_key": ["Already used with a different event type, payload or id."]},
        )
    return Published(message=existing, created=False, delivery_count=existing.deliveries.count())


def _request_hash(new: NewMessage) -> str:
    content = {"event_type": new.event_type, "payload": new.payload, "id": new.uid}
    return hashlib.sha256(_canonical(content)).hexdigest()


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# --- Test events -----------------------------------------------------------------

TEST_EVENT_TYPE = "hookpost.test"


def message_publish_test(*, endpoint: Endpoint) -> Delivery:
    """Send a test event to this one endpoint (the admin's "send test event").

    Writes a Message of the reserved event type ``hookpost.test`` (created on
    first use) and one Delivery to ``endpoint`` only, whatever its event-type
    filter, and queues it after commit. Its attempts are recorded with trigger
    ``test`` and it shows in the delivery history like any other. Raises
    Conflict when the endpoint is disabled (it would only be skipped).
    """
    if not endpoint.enabled:
        raise Conflict("The endpoint is disabled; enable it before sending a test event.")
    with transaction.atomic():
        event_type, _ = EventType.objects.get_or_create(
            name=TEST_EVENT_TYPE, defaults={"description": "Test events sent from the Hookpost admin."}
        )
        message = Message.objects.create(
            tenant_id=endpoint.tenant_id,
            event_type=event_type,
            payload={
                "message": "This is a test event from Hookpost.",
                "endpoint_id": endpoint.uid,
                "sent_at": timezone.now().isoformat(),
            },
        )
        token = new_token()
        (delivery,) = deliveries_for(message=message, endpoints=[endpoint], lease_token=token)
        delivery.next_trigger = Attempt.Trigger.TEST
        delivery.save()
        dispatch.enqueue_on_commit([delivery.pk], token)
    return delivery
