"""Configuration domain: tenants, their people and keys, event types, endpoints
and endpoint secrets. Runtime rows (messages, deliveries, attempts) live in
``deliveries.models``.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from webhooks.encryption import EncryptedSecretField
from webhooks.ids import new_id


def _tenant_id() -> str:
    return new_id("tnt")


def _api_key_id() -> str:
    return new_id("key")


def _endpoint_id() -> str:
    return new_id("ep")


slug_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$",
    "Use 1-64 lowercase letters, digits and dashes, not starting or ending with a dash.",
)
event_type_name_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$",
    "Use letters, digits, dots, dashes and underscores, e.g. invoice.paid.",
)


class Tenant(models.Model):
    """A customer who receives webhooks. ``uid`` is the slug used in API paths."""

    uid = models.CharField(max_length=64, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200)
    retention_days = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1), MaxValueValidator(3650)]
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["uid"]

    def __str__(self) -> str:
        return self.uid


class Membership(models.Model):
    """A Django user's access to one tenant (a user may belong to several)."""

    class Role(models.TextChoices):
        ADMIN = "admin", "Admin"
        VIEWER = "viewer", "Viewer"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ADMIN)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="membership_user_tenant_uniq")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant}"


class ApiKey(models.Model):
    """A bearer key. Only its SHA-256 is stored; the key itself is shown once.

    ``tenant`` is null for operator keys (internal services that manage all
    tenants and the event-type catalogue).
    """

    uid = models.CharField(max_length=40, unique=True, default=_api_key_id, editable=False)
    name = models.CharField(max_length=200, blank=True)
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys"
    )
    prefix = models.CharField(max_length=16, help_text="First characters, to recognise the key.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        scope = self.tenant.uid if self.tenant_id and self.tenant else "operator"
        return f"{self.prefix}… ({scope})"

    @property
    def is_operator(self) -> bool:
        return self.tenant_id is None

    # DRF treats the authenticated principal as ``request.user``.
    is_authenticated = True


class EventType(models.Model):
    """A kind of event (``invoice.paid``), global to the platform.

    When ``schema`` is set, payloads must satisfy it (JSON Schema 2020-12).
    Event types are archived, never deleted, because messages refer to them.
    """

    name = models.CharField(max_length=128, unique=True, validators=[event_type_name_validator])
    description = models.TextField(blank=True)
    schema = models.JSONField(null=True, blank=True)
    archived = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Endpoint(models.Model):
    """A tenant's receiver URL and how to deliver to it."""

    class CircuitState(models.TextChoices):
        CLOSED = "closed", "Closed"
        OPEN = "open", "Open"
        HALF_OPEN = "half_open", "Half-open"

    uid = models.CharField(max_length=40, unique=True, default=_endpoint_id, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="endpoints")
    url = models.URLField(max_length=2048)
    description = models.CharField(max_length=500, blank=True)
    # Empty = every event type.
    event_types = models.ManyToManyField(EventType, blank=True, related_name="endpoints")
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=500, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    headers = models.JSONField(default=dict, blank=True)
    timeout_seconds = models.PositiveSmallIntegerField(
        default=15, validators=[MinValueValidator(1), MaxValueValidator(30)]
    )
    rate_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Deliveries per second; empty = unlimited."
    )
    # Null inherits HOOKPOST_ENDPOINT_MAX_IN_FLIGHT; the upper bound
    # (HOOKPOST_ENDPOINT_MAX_IN_FLIGHT_LIMIT) is a setting, checked by the services.
    max_in_flight = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Requests in flight at once, across all workers; empty = platform default.",
    )
    retry_schedule = models.JSONField(
        null=True, blank=True, help_text="Seconds between attempts; empty = platform default."
    )
    # Mirror of the shared breaker state in Redis, for display only.
    circuit_state = models.CharField(max_length=16, choices=CircuitState.choices, default=CircuitState.CLOSED)
    circuit_changed_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    # Start of the current run of failed attempts (null after a success): an
    # endpoint failing for HOOKPOST_AUTO_DISABLE_AFTER_SECONDS is disabled.
    failing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="endpoint_tenant_created")]

    def __str__(self) -> str:
        return f"{self.uid} {self.url}"


class EndpointSecret(models.Model):
    """A signing secret (``whsec_`` + base64 of random bytes).

    An endpoint has one current secret (``expires_at`` null) and, after a
    rotation, older ones that keep signing until they expire, so receivers can
    switch without dropping requests.
    """

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="secrets")
    # Encrypted at rest when HOOKPOST_ENCRYPTION_KEY is set (webhooks.encryption).
    secret = EncryptedSecretField()
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint"],
                condition=Q(expires_at__isnull=True),
                name="endpointsecret_one_current",
            )
        ]

    def __str__(self) -> str:
        return f"secret of {self.endpoint_id} created {self.created_at:%Y-%m-%d %H:%M}"
