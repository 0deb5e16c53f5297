"""Writes and business rules of the configuration domain.

Functions are keyword-only, named ``<entity>_<action>``, and raise
``webhooks.errors`` exceptions for input they refuse; they never touch HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema_specifications import REGISTRY as METASCHEMAS
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from webhooks import header_policy, signing
from webhooks.api_keys import generate_api_key, hash_api_key, shown_prefix
from webhooks.errors import Conflict, Invalid
from webhooks.models import ApiKey, Endpoint, EndpointSecret, EventType, Tenant, slug_validator
from webhooks.target_policy import TargetRejected, check_url, parse_networks

MAX_RETRY_STEPS = 20
MAX_RETRY_DELAY_SECONDS = 7 * 24 * 3600
MAX_GRACE_SECONDS = 7 * 24 * 3600

# --- Tenants -------------------------------------------------------------------


def tenant_create(*, uid: str, name: str, retention_days: int = 30) -> Tenant:
    """Create a tenant; Invalid for a bad uid, Conflict if the uid is taken."""
    _check_slug(uid)
    try:
        with transaction.atomic():
            return Tenant.objects.create(uid=uid, name=name or uid, retention_days=retention_days)
    except IntegrityError as exc:
        raise Conflict(
            f"A tenant with uid {uid!r} already exists.",
            {"uid": ["A tenant with this uid already exists."]},
        ) from exc


def tenant_update(*, tenant: Tenant, data: dict[str, Any]) -> Tenant:
    for field in ("name", "retention_days"):
        if field in data:
            setattr(tenant, field, data[field])
    tenant.save()
    return tenant


def tenant_delete(*, tenant: Tenant) -> None:
    """Delete a tenant with its endpoints, messages and history."""
    tenant.delete()


def _check_slug(uid: str) -> None:
    try:
        slug_validator(uid)
    except DjangoValidationError as exc:
        raise Invalid("The tenant uid is invalid.", {"uid": list(exc.messages)}) from exc


# --- API keys ------------------------------------------------------------------


def api_key_create(
    *, tenant: Tenant | None, name: str = "", expires_at: datetime | None = None
) -> tuple[ApiKey, str]:
    """Create a key and return it with the raw key, which is never stored.

    ``tenant=None`` makes an operator key.
    """
    raw = generate_api_key()
    key = ApiKey.objects.create(
        tenant=tenant,
        name=name,
        prefix=shown_prefix(raw),
        key_hash=hash_api_key(raw),
        expires_at=expires_at,
    )
    return key, raw


def api_key_revoke(*, key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def api_key_mark_used(*, key: ApiKey) -> None:
    """Record use at most once a minute per key, so reads don't all become writes."""
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > timedelta(minutes=1):
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)


# --- Event types ---------------------------------------------------------------


def event_type_create(*, name: str, description: str = "", schema: dict[str, Any] | None = None) -> EventType:
    _check_schema(schema)
    try:
        with transaction.atomic():
            return EventType.objects.create(name=name, description=description, schema=schema)
    except IntegrityError as exc:
        raise Conflict(
            f"The event type {name!r} already exists.",
            {"name": ["An event type with this name already exists."]},
        ) from exc


def event_type_update(*, event_type: EventType, data: dict[str, Any]) -> EventType:
    if "schema" in data:
        _check_schema(data["schema"])
    for field in ("description", "schema", "archived"):
        if field in data:
            setattr(event_type, field, data[field])
    event_type.save()
    return event_type


def _check_schema(schema: dict[str, Any] | None) -> None:
    if schema is None:
        return
    if not isinstance(schema, dict):
        raise Invalid("The schema is invalid.", {"schema": ["Must be a JSON Schema object."]})
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise Invalid("The schema is not a valid JSON Schema.", {"schema": [exc.message]}) from exc
    # A schema that passes the metaschema can still be unusable; refuse it here
    # rather than fail every publish of the event type later.
    problems = _unresolvable_references(schema)
    if problems:
        raise Invalid("The schema refers to schemas it does not contain.", {"schema": problems})
    try:
        validator = Draft202012Validator(schema)
        probe: object
        for probe in (None, {}, []):
            validator.is_valid(probe)
    except RecursionError as exc:
        raise Invalid(
            "The schema refers to itself without end.",
            {"schema": ["A reference cycle applies the schema to the same value forever."]},
        ) from exc


def _unresolvable_references(schema: dict[str, Any]) -> list[str]:
    """``$ref``/``$dynamicRef`` values that do not resolve (remote schemas are never fetched)."""
    root = DRAFT202012.create_resource(schema)
    stack = [(root, METASCHEMAS.resolver_with_root(root))]
    problems: list[str] = []
    while stack:
        resource, resolver = stack.pop()
        resolver = resolver.in_subresource(resource)
        contents = resource.contents
        for keyword in ("$ref", "$dynamicRef"):
            ref = contents.get(keyword) if isinstance(contents, dict) else None
            if isinstance(ref, str):
                try:
                    resolver.lookup(ref)
                except Unresolvable:
                    problems.append(f"{keyword} {ref!r} cannot be resolved within the schema.")
        stack.extend((sub, resolver) for sub in resource.subresources())
    return problems


# --- Endpoints -----------------------------------------------------------------


@dataclass(frozen=True)
class EndpointCreated:
    endpoint: Endpoint
    secret: str


def endpoint_create(
    *,
    tenant: Tenant,
    url: str,
    description: str = "",
    event_types: list[str] | None = None,
    enabled: bool = True,
    headers: dict[str, str] | None = None,
    rate_limit: int | None = None,
    max_in_flight: int | None = None,
    timeout_seconds: int | None = None,
    retry_schedule: list[int] | None = None,
    secret: str | None = None,
) -> EndpointCreated:
    """Register an endpoint with a fresh (or the given) signing secret.

    Raises Invalid when the URL's target is refused, an event type is unknown
    or archived, or headers/schedule/in-flight cap break their rules.
    ``max_in_flight`` None inherits ``HOOKPOST_ENDPOINT_MAX_IN_FLIGHT``.
    """
    errors: dict[str, list[str]] = {}
    _collect(errors, "url", _check_target, url)
    _collect(errors, "headers", _check_headers, headers or {})
    _collect(errors, "max_in_flight", _check_max_in_flight, max_in_flight)
    _collect(errors, "retry_schedule", _check_retry_schedule, retry_schedule)
    _collect(errors, "secret", _check_secret, secret)
    types = _collect(errors, "event_types", _event_types_by_name, event_types or [])
    if errors:
        raise Invalid("The endpoint is invalid.", errors)
    with transaction.atomic():
        endpoint = Endpoint.objects.create(
            tenant=tenant,
            url=url,
            description=description,
            enabled=enabled,
            disabled_reason="" if enabled else "Disabled when created.",
            disabled_at=None if enabled else timezone.now(),
            headers=headers or {},
            rate_limit=rate_limit,
            max_in_flight=max_in_flight,
            timeout_seconds=timeout_seconds or settings.HOOKPOST_DEFAULT_TIMEOUT_SECONDS,
            retry_schedule=retry_schedule,
        )
        endpoint.event_types.set(types or [])
        current = EndpointSecret.objects.create(endpoint=endpoint, secret=secret or signing.generate_secret())
    return EndpointCreated(endpoint=endpoint, secret=current.secret)


def endpoint_update(*, endpoint: Endpoint, data: dict[str, Any]) -> Endpoint:
    """Apply a partial update; same rules as ``endpoint_create``.

    Re-enabling clears the disabled reason; disabling records why and when.
    """
    errors: dict[str, list[str]] = {}
    if "url" in data:
        _collect(errors, "url", _check_target, data["url"])
    if "headers" in data:
        _collect(errors, "headers", _check_headers, data["headers"] or {})
    if "retry_schedule" in data:
        _collect(errors, "retry_schedule", _check_retry_schedule, data["retry_schedule"])
    if "max_in_flight" in data:
        _collect(errors, "max_in_flight", _check_max_in_flight, data["max_in_flight"])
    types = None
    if "event_types" in data:
        types = _collect(errors, "event_types", _event_types_by_name, data["event_types"] or [])
    if errors:
        raise Invalid("The endpoint is invalid.", errors)
    for field in ("url", "description", "rate_limit", "max_in_flight", "timeout_seconds", "retry_schedule"):
        if field in data:
            setattr(endpoint, field, data[field])
    if "headers" in data:
        endpoint.headers = data["headers"] or {}
    reenabled = False
    if "enabled" in data and data["enabled"] != endpoint.enabled:
        endpoint.enabled = data["enabled"]
        endpoint.disabled_at = None if endpoint.enabled else timezone.now()
        endpoint.disabled_reason = "" if endpoint.enabled else "Disabled by the tenant."
        if endpoint.enabled:
            _endpoint_protection_clear(endpoint)
            reenabled = True
    with transaction.atomic():
        endpoint.save()
        if types is not None:
            endpoint.event_types.set(types)
        if reenabled:
            transaction.on_commit(lambda: _endpoint_breaker_reset(endpoint))
    return endpoint


def _endpoint_protection_clear(endpoint: Endpoint) -> None:
    """A re-enabled endpoint starts afresh: circuit closed and no run of failures,
    so the auto-disable window starts again from its next failure."""
    endpoint.circuit_state = Endpoint.CircuitState.CLOSED
    endpoint.circuit_changed_at = timezone.now()
    endpoint.consecutive_failures = 0
    endpoint.failing_since = None


def _endpoint_breaker_reset(endpoint: Endpoint) -> None:
    # The runtime domain owns the breaker state shared in Redis; imported here
    # so the configuration domain does not load the delivery engine.
    from deliveries import breaker

    breaker.reset(endpoint)


def endpoint_delete(*, endpoint: Endpoint) -> None:
    """Delete an endpoint with its deliveries and attempts."""
    endpoint.delete()


def endpoint_secret_rotate(
    *, endpoint: Endpoint, grace_seconds: int | None = None, secret: str | None = None
) -> str:
    """Make a new current secret; the old one keeps signing for ``grace_seconds``.

    Returns the new secret. Secrets already expired are deleted.
    """
    grace = settings.HOOKPOST_SECRET_GRACE_SECONDS if grace_seconds is None else grace_seconds
    errors: dict[str, list[str]] = {}
    if not 0 <= grace <= MAX_GRACE_SECONDS:
        errors["grace_seconds"] = [f"Must be from 0 to {MAX_GRACE_SECONDS} seconds."]
    _collect(errors, "secret", _check_secret, secret)
    if errors:
        raise Invalid("The rotation request is invalid.", errors)
    now = timezone.now()
    with transaction.atomic():
        # Lock the endpoint so two concurrent rotations serialize.
        Endpoint.objects.select_for_update().filter(pk=endpoint.pk).first()
        EndpointSecret.objects.filter(endpoint=endpoint, expires_at__lte=now).delete()
        EndpointSecret.objects.filter(endpoint=endpoint, expires_at__isnull=True).update(
            expires_at=now + timedelta(seconds=grace)
        )
        new = EndpointSecret.objects.create(endpoint=endpoint, secret=secret or signing.generate_secret())
    return new.secret


def _collect(errors: dict[str, list[str]], field: str, check: Any, value: Any) -> Any:
    try:
        return check(value)
    except Invalid as exc:
        errors[field] = exc.details.get(field) or [exc.message]
        return None


def _check_target(url: str) -> None:
    try:
        check_url(url, parse_networks(settings.HOOKPOST_ALLOWED_TARGET_NETWORKS))
    except TargetRejected as exc:
        raise Invalid(f"The URL is not allowed: {exc}") from exc


def _check_headers(headers: Any) -> None:
    problems = header_policy.header_problems(headers)
    if problems:
        raise Invalid(problems[0], {"headers": problems})


def _check_retry_schedule(schedule: list[int] | None) -> None:
    if schedule is None:
        return
    if not isinstance(schedule, list) or not 1 <= len(schedule) <= MAX_RETRY_STEPS:
        raise Invalid(f"Must be a list of 1 to {MAX_RETRY_STEPS} delays in seconds, or null.")
    for delay in schedule:
        if isinstance(delay, bool) or not isinstance(delay, int) or not 1 <= delay <= MAX_RETRY_DELAY_SECONDS:
            raise Invalid(f"Each delay must be an integer from 1 to {MAX_RETRY_DELAY_SECONDS} seconds.")


def _check_max_in_flight(cap: int | None) -> None:
    if cap is None:
        return
    limit = settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT_LIMIT
    if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= limit:
        raise Invalid(f"Must be an integer from 1 to {limit}, or null for the platform default.")


def _check_secret(secret: str | None) -> None:
    if secret is None:
        return
    if not secret.startswith(signing.SECRET_PREFIX):
        raise Invalid("A secret starts with 'whsec_'.")
    try:
        signing.decode_secret(secret)
    except signing.InvalidSecret as exc:
        raise Invalid(f"The secret is invalid: {exc}.") from exc


def _event_types_by_name(names: list[str]) -> list[EventType]:
    wanted = set(names)
    found = {et.name: et for et in EventType.objects.filter(name__in=wanted)}
    problems = [f"Unknown event type {name!r}." for name in sorted(wanted - found.keys())]
    problems += [f"The event type {n!r} is archived." for n, et in sorted(found.items()) if et.archived]
    if problems:
        raise Invalid("Some event types cannot be used.", {"event_types": problems})
    return list(found.values())


def endpoint_check(*, data: dict[str, Any]) -> None:
    """Raise Invalid, with per-field details, if ``endpoint_create``/``endpoint_update``
    would refuse these fields; write nothing.

    For forms (the admin) that must show the service's errors next to the
    fields before anything is saved. Only the keys present are checked:
    ``url``, ``headers``, ``retry_schedule``, ``max_in_flight``, ``secret``,
    ``event_types`` (names).
    """
    errors: dict[str, list[str]] = {}
    if "url" in data:
        _collect(errors, "url", _check_target, data["url"])
    if "headers" in data:
        _collect(errors, "headers", _check_headers, data["headers"] or {})
    if "retry_schedule" in data:
        _collect(errors, "retry_schedule", _check_retry_schedule, data["retry_schedule"])
    if "max_in_flight" in data:
        _collect(errors, "max_in_flight", _check_max_in_flight, data["max_in_flight"])
    if "secret" in data:
        _collect(errors, "secret", _check_secret, data["secret"])
    if "event_types" in data:
        _collect(errors, "event_types", _event_types_by_name, data["event_types"] or [])
    if errors:
        raise Invalid("The endpoint is invalid.", errors)
