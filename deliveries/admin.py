"""Admin for the delivery history: messages, deliveries, attempts and dead letters.

Everything here is read-only history (invariant: history is never
rewritten); the only writes are replay and discard, done by the services in
``deliveries.replay`` and ``deliveries.dead_letters``. Tenant scoping comes
from ``webhooks.admin_scoping.TenantScopedAdmin``.

Built for large histories: lists never run a full COUNT(*)
(``EstimatedCountPaginator``, ``show_full_result_count = False``, no facets),
read related rows with ``select_related`` instead of one query per row, sort
only by indexed columns, and search by exact ids through indexed lookups
instead of ``LIKE`` scans.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import ShowFacets
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from config.numbers import MAX_BIGINT, NumberRejected, parse_int
from deliveries.dead_letters import dead_letters_discard
from deliveries.models import Attempt, DeadLetter, Delivery, Message
from deliveries.outbound import redact_headers
from deliveries.replay import REPLAYABLE, deliveries_replay, delivery_replay
from webhooks.admin_pagination import EstimatedCountPaginator
from webhooks.admin_scoping import (
    TenantScopedAdmin,
    can_manage_tenant,
    managed_tenant_ids,
    scope_queryset,
    visible_endpoints,
    visible_tenant_ids,
    visible_tenants,
)
from webhooks.errors import ServiceError
from webhooks.models import Tenant

if TYPE_CHECKING:
    from django.contrib.admin.options import _ListFilterT  # a django-stubs alias

# --- Display helpers --------------------------------------------------------------

STATUS_COLORS: dict[str, str] = {
    Delivery.Status.SUCCEEDED: "#2e7d32",
    Delivery.Status.FAILED: "#ef6c00",
    Delivery.Status.DEAD: "#c62828",
    Delivery.Status.PENDING: "#1565c0",
    Delivery.Status.SKIPPED: "#757575",
}


def pretty_json(value: Any) -> SafeString:
    """``value`` as indented JSON in a <pre>, HTML-escaped (payloads are untrusted)."""
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)
    return format_html('<pre class="hp-pre">{}</pre>', text)


def pretty_headers(headers: dict[str, Any] | None) -> SafeString:
    """Headers as ``Name: value`` lines, credentials redacted, HTML-escaped."""
    if not headers:
        return format_html('<span class="quiet">{}</span>', "none")
    shown = redact_headers({str(k): str(v) for k, v in headers.items()})
    lines = "\n".join(f"{name}: {value}" for name, value in shown.items())
    return format_html('<pre class="hp-pre">{}</pre>', lines)


def pretty_body(body: str) -> SafeString:
    """A response body excerpt: JSON is indented, anything else shown as text, escaped."""
    if not body:
        return format_html('<span class="quiet">{}</span>', "empty")
    try:
        return pretty_json(json.loads(body))
    except ValueError:
        return format_html('<pre class="hp-pre">{}</pre>', body)


def status_badge(status: str, label: str) -> SafeString:
    color = STATUS_COLORS.get(status, "#555")
    return format_html('<span class="hp-badge" style="background:{}">{}</span>', color, label)


def admin_link(viewname: str, pk: Any, text: str) -> SafeString:
    return format_html('<a href="{}">{}</a>', reverse(viewname, args=[pk]), text)


# --- List filters -----------------------------------------------------------------


def _row_id(value: str) -> int | None:
    """The row id a filter's query parameter names, or None when it names none."""
    try:
        return parse_int(value, minimum=1, maximum=MAX_BIGINT)
    except NumberRejected:
        return None


class EndpointFilter(admin.SimpleListFilter):
    """Endpoints of the user's tenants only (never another tenant's URLs)."""

    title = "endpoint"
    parameter_name = "endpoint"
    max_choices = 500

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        rows = visible_endpoints(request).order_by("url", "pk").values_list("pk", "url")[: self.max_choices]
        return [(str(pk), Truncator(url).chars(60)) for pk, url in rows]

    def __init__(self, request: HttpRequest, params: Any, model: Any, model_admin: Any) -> None:
        self.endpoint_path: str = getattr(model_admin, "endpoint_path", "endpoint_id")
        super().__init__(request, params, model, model_admin)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        row_id = _row_id(value)
        return queryset.none() if row_id is None else queryset.filter(**{self.endpoint_path: row_id})


class TenantFilter(admin.SimpleListFilter):
    """Shown to users of several tenants (and operators); lists only theirs."""

    title = "tenant"
    parameter_name = "tenant"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        tenants = list(visible_tenants(request).values_list("pk", "uid")[:500])
        return [(str(pk), uid) for pk, uid in tenants] if len(tenants) > 1 else []

    def __init__(self, request: HttpRequest, params: Any, model: Any, model_admin: Any) -> None:
        self.tenant_path: str = model_admin.tenant_path
        super().__init__(request, params, model, model_admin)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        row_id = _row_id(value)
        return queryset.none() if row_id is None else queryset.filter(**{self.tenant_path: row_id})


# --- Shared base -------------------------------------------------------------------


class HistoryAdmin(TenantScopedAdmin):
    """Read-only, large-table friendly base for history lists."""

    class Media:
        css = {"all": ("hookpost/admin.css",)}

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    show_facets = ShowFacets.NEVER
    list_per_page = 50
    list_max_show_all = 0  # "Show all" would load the whole history.
    sortable_by: ClassVar[tuple[str, ...]] = ("created_at",)

    # Whether to add a tenant column for users who see several tenants.
    tenant_column = True

    def get_list_display(self, request: HttpRequest) -> Any:
        shown = list(super().get_list_display(request))
        ids = visible_tenant_ids(request)
        if self.tenant_column and (ids is None or len(ids) > 1):
            shown.insert(1, "tenant")
        return shown

    def get_ordering(self, request: HttpRequest) -> Any:
        # Tenant users read through the ``(tenant, created DESC)`` indexes. An
        # operator's list spans every tenant, where no index has ``created``
        # first: newest id first is the same order (ids grow with time) and
        # walks the primary key instead of sorting the whole table.
        if visible_tenant_ids(request) is None:
            return ("-pk",)
        return super().get_ordering(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_replay_permission(self, request: HttpRequest) -> bool:
        """Replay needs view access and the ``admin`` role in some tenant."""
        return self.has_view_permission(request) and can_manage_tenant(request, None)


def _replay_queryset(request: HttpRequest, queryset: QuerySet[Delivery]) -> tuple[int, int]:
    """Replay the selection, tenant by tenant, only where the user has the admin role.

    Returns (replayed, not replayed). ``queryset`` is already scoped to the
    user's tenants by the changelist, so forged ids of other tenants are not in it.
    """
    managed = managed_tenant_ids(request)
    selected = queryset.order_by().values_list("tenant_id", "pk")
    by_tenant: dict[int, list[int]] = {}
    for tenant_id, pk in selected:
        by_tenant.setdefault(tenant_id, []).append(pk)
    replayed = not_replayed = 0
    for tenant_id, ids in by_tenant.items():
        if managed is not None and tenant_id not in managed:
            not_replayed += len(ids)
            continue
        tenant = Tenant.objects.get(pk=tenant_id)
        report = deliveries_replay(tenant=tenant, deliveries=Delivery.objects.filter(pk__in=ids).only("pk"))
        replayed += report.replayed
        not_replayed += report.not_replayed
    return replayed, not_replayed


def _report_replay(admin_: admin.ModelAdmin[Any], request: HttpRequest, replayed: int, skipped: int) -> None:
    noun = "delivery" if replayed == 1 else "deliveries"
    if replayed:
        admin_.message_user(
            request,
            f"{replayed} {noun} queued for replay; new attempts appear in the history.",
            messages.SUCCESS,
        )
    if skipped:
        admin_.message_user(
            request,
            f"{skipped} not replayed: already pending or in flight, endpoint disabled, "
            "or you may only view that tenant.",
            messages.WARNING,
        )


# --- Attempts ----------------------------------------------------------------------


class AttemptDisplay:
    """Read-only renderings of an Attempt, shared by the inline and its own admin."""

    @admin.display(description="duration")
    def duration(self, obj: Attempt) -> str:
        return "—" if obj.duration_ms is None else f"{obj.duration_ms:,} ms"

    @admin.display(description="request headers (secrets redacted)")
    def request_headers_display(self, obj: Attempt) -> SafeString:
        return pretty_headers(obj.request_headers)

    @admin.display(description="response headers")
    def response_headers_display(self, obj: Attempt) -> SafeString:
        return pretty_headers(obj.response_headers)

    @admin.display(description="response body (excerpt)")
    def response_body_display(self, obj: Attempt) -> SafeString:
        return pretty_body(obj.response_body)

    @admin.display(description="response status")
    def response_status_display(self, obj: Attempt) -> SafeString:
        if obj.response_status is None:
            return format_html('<span class="quiet">{}</span>', "no response")
        ok = 200 <= obj.response_status < 300
        return status_badge(
            Delivery.Status.SUCCEEDED if ok else Delivery.Status.DEAD, str(obj.response_status)
        )

    @admin.display(description="error")
    def error_display(self, obj: Attempt) -> str:
        if not obj.error_class and not obj.error_message:
            return "—"
        return f"{obj.error_class}: {obj.error_message}".strip(": ")


ATTEMPT_FIELDS = (
    "number",
    "trigger",
    "started_at",
    "duration",
    "response_status_display",
    "error_display",
    "request_headers_display",
    "response_headers_display",
    "response_body_display",
)


class AttemptInline(AttemptDisplay, admin.StackedInline):  # type: ignore[type-arg]  # generic only in django-stubs
    model = Attempt
    extra = 0
    can_delete = False
    fields = ATTEMPT_FIELDS
    readonly_fields = ATTEMPT_FIELDS
    ordering = ("number",)
    verbose_name_plural = "attempts"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Attempt)
class AttemptAdmin(AttemptDisplay, HistoryAdmin):
    tenant_path = "delivery__tenant_id"
    endpoint_path = "delivery__endpoint_id"
    tenant_column = False  # the tenant is the delivery's; one more join for little use
    list_display = (
        "started_at",
        "delivery_link",
        "number",
        "trigger",
        "response_status_display",
        "duration",
        "error_display",
    )
    list_display_links = ("started_at",)
    list_filter = ("trigger", EndpointFilter, TenantFilter)
    list_select_related = ("delivery", "delivery__message")
    search_fields = ("=delivery__uid",)
    search_help_text = "Exact delivery id or message id (webhook-id)."
    # Attempts have no tenant or time index; the primary key grows with time
    # and walking it backwards stops after one page.
    ordering = ("-pk",)
    sortable_by = ()
    fieldsets = ((None, {"fields": ("delivery_link", *ATTEMPT_FIELDS)}),)
    readonly_fields = ("delivery_link", *ATTEMPT_FIELDS)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Attempt]:
        return (
            super()
            .get_queryset(request)
            .select_related("delivery", "delivery__message")
            .defer("delivery__message__payload")
        )

    def tenant_id_of(self, obj: Any) -> int:
        return int(obj.delivery.tenant_id)

    @admin.display(description="delivery")
    def delivery_link(self, obj: Attempt) -> SafeString:
        d = obj.delivery
        return admin_link("admin:deliveries_delivery_change", d.pk, f"{d.uid} ({d.message.uid})")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Attempt], search_term: str
    ) -> tuple[QuerySet[Attempt], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(delivery_id__in=_matching_ids(_deliveries_matching(request, term))), False


# --- Deliveries --------------------------------------------------------------------


# Searches are exact-id lookups; more matches than this cannot be meant.
SEARCH_MATCH_LIMIT = 1000


def _matching_ids(qs: QuerySet[Any]) -> list[int]:
    """Resolve a search to primary keys first, without ordering.

    Filtering the ordered list with ``uid = term OR message_id IN (…)`` lets
    PostgreSQL walk the time index and test every row until it fills a page
    (the whole history when one row matches); looked up on their own, the same
    conditions are two index probes, and the page query then reads only those rows.
    """
    return list(qs.order_by().values_list("pk", flat=True)[:SEARCH_MATCH_LIMIT])


def _messages_matching(request: HttpRequest, term: str) -> QuerySet[Message]:
    """The user's messages whose id (webhook-id) or idempotency key is exactly ``term``.

    Two indexed lookups, ``(tenant, uid)`` and ``(tenant, idempotency_key)``.
    """
    qs = Message.objects.filter(Q(uid=term) | Q(idempotency_key=term))
    return scope_queryset(qs, "tenant_id", visible_tenant_ids(request))


def _deliveries_matching(request: HttpRequest, term: str) -> QuerySet[Delivery]:
    # The message ids as a list, not a subquery: ``uid = … OR message_id IN
    # (SELECT …)`` is planned as a scan with a hashed subplan, while with a
    # list it is two index probes (BitmapOr).
    message_ids = _matching_ids(_messages_matching(request, term))
    qs = Delivery.objects.filter(Q(uid=term) | Q(message_id__in=message_ids))
    return scope_queryset(qs, "tenant_id", visible_tenant_ids(request))


class DeliveryAdmin(HistoryAdmin):
    """The delivery history: who got which message, and what they answered."""

    change_form_template = "admin/deliveries/delivery/change_form.html"
    list_display = (
        "created_at",
        "webhook_id",
        "event_type_name",
        "endpoint_link",
        "status_display",
        "attempt_count",
        "last_status_code",
        "next_attempt_at",
    )
    list_display_links = ("created_at", "webhook_id")
    list_filter: ClassVar[tuple[_ListFilterT, ...]] = (
        ("status", admin.ChoicesFieldListFilter),
        EndpointFilter,
        ("event_type", admin.RelatedFieldListFilter),
        ("created_at", admin.DateFieldListFilter),
        TenantFilter,
    )
    list_select_related = ("endpoint", "message", "event_type")
    search_fields = ("=uid",)  # the real lookups are in get_search_results
    search_help_text = "Exact message id (webhook-id), idempotency key or delivery id."
    actions: tuple[str, ...] = ("replay_selected",)
    inlines = (AttemptInline,)
    readonly_fields = (
        "uid",
        "status_display",
        "webhook_id",
        "idempotency_key",
        "event_type_name",
        "endpoint_link",
        "tenant",
        "created_at",
        "finished_at",
        "attempt_count",
        "next_attempt_at",
        "last_status_code",
        "last_error",
        "replay_count",
        "payload_display",
    )
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "uid",
                    "status_display",
                    "webhook_id",
                    "idempotency_key",
                    "event_type_name",
                    "endpoint_link",
                    "tenant",
                )
            },
        ),
        (
            "Progress",
            {
                "fields": (
                    "created_at",
                    "attempt_count",
                    "next_attempt_at",
                    "last_status_code",
                    "last_error",
                    "finished_at",
                    "replay_count",
                )
            },
        ),
        ("Payload", {"fields": ("payload_display",)}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Delivery]:
        # Payloads can be 256 KiB each: a list page must not load 50 of them.
        return (
            super()
            .get_queryset(request)
            .select_related("endpoint", "message", "event_type", "tenant")
            .defer(
                "message__payload", "message__request_hash", "endpoint__headers", "endpoint__retry_schedule"
            )
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Delivery], search_term: str
    ) -> tuple[QuerySet[Delivery], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(pk__in=_matching_ids(_deliveries_matching(request, term))), False

    # -- columns ----------------------------------------------------------------------
    @admin.display(description="webhook-id")
    def webhook_id(self, obj: Delivery) -> str:
        return obj.message.uid

    @admin.display(description="idempotency key")
    def idempotency_key(self, obj: Delivery) -> str:
        return obj.message.idempotency_key or "—"

    @admin.display(description="event type")
    def event_type_name(self, obj: Delivery) -> str:
        return obj.event_type.name

    @admin.display(description="endpoint")
    def endpoint_link(self, obj: Delivery) -> SafeString:
        return admin_link(
            "admin:webhooks_endpoint_change", obj.endpoint_id, Truncator(obj.endpoint.url).chars(60)
        )

    @admin.display(description="status", ordering="status")
    def status_display(self, obj: Delivery) -> SafeString:
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description="payload")
    def payload_display(self, obj: Delivery) -> SafeString:
        return pretty_json(obj.message.payload)

    # -- replay -------------------------------------------------------------------------
    @admin.action(description="Replay selected deliveries", permissions=("replay",))
    def replay_selected(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        replayed, skipped = _replay_queryset(request, queryset)
        _report_replay(self, request, replayed, skipped)

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/replay/",
                self.admin_site.admin_view(self.replay_view),
                name="{}_{}_replay".format(*info),
            ),
            *super().get_urls(),
        ]

    def replay_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: replay one delivery now, then show it (where the new attempt will appear)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        delivery = self.get_object(request, object_id)  # 404 outside the user's tenants
        if not can_manage_tenant(request, delivery.tenant_id):
            raise PermissionDenied
        try:
            delivery_replay(delivery=delivery)
        except ServiceError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.log_change(request, delivery, "Replayed.")
            self.message_user(
                request,
                f"Delivery {delivery.uid} queued for replay; the new attempt appears below once made.",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(reverse("admin:deliveries_delivery_change", args=[delivery.pk]))

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Delivery | None = None,
    ) -> HttpResponse:
        context["can_replay"] = bool(
            obj is not None and obj.status in REPLAYABLE and can_manage_tenant(request, obj.tenant_id)
        )
        return super().render_change_form(request, context, add, change, form_url, obj)


admin.site.register(Delivery, DeliveryAdmin)


# --- Dead letters ------------------------------------------------------------------


@admin.register(DeadLetter)
class DeadLetterAdmin(DeliveryAdmin):
    """The dead-letter queue: deliveries whose retries ran out. Replay or discard."""

    change_form_template = "admin/deliveries/deadletter/change_form.html"
    list_filter = (
        EndpointFilter,
        ("event_type", admin.RelatedFieldListFilter),
        ("created_at", admin.DateFieldListFilter),
        TenantFilter,
    )
    actions = ("replay_selected", "discard_selected")

    def has_discard_permission(self, request: HttpRequest) -> bool:
        return self.has_replay_permission(request)

    @admin.action(description="Replay selected dead letters", permissions=("replay",))
    def replay_selected(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        replayed, skipped = _replay_queryset(request, queryset)
        _report_replay(self, request, replayed, skipped)

    @admin.action(description="Discard selected dead letters…", permissions=("discard",))
    def discard_selected(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> HttpResponse | None:
        """Ask for confirmation, then delete the selected dead letters of the user's managed tenants."""
        if request.POST.get("confirm") != "yes":
            # At most 1,000 per confirmation, so the page stays small.
            selected = [str(pk) for pk in queryset.order_by().values_list("pk", flat=True)[:1000]]
            return TemplateResponse(
                request,
                "admin/deliveries/deadletter/discard_confirmation.html",
                {
                    **self.admin_site.each_context(request),
                    "opts": self.opts,
                    "title": "Discard dead letters?",
                    "selected": selected,
                    "count": len(selected),
                    "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                },
            )
        discarded = 0
        for tenant_id, rows in _by_tenant(queryset).items():
            if can_manage_tenant(request, tenant_id):
                discarded += dead_letters_discard(tenant=Tenant.objects.get(pk=tenant_id), deliveries=rows)
        self.message_user(request, f"{discarded} dead letter(s) discarded.", messages.SUCCESS)
        return None

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/discard/",
                self.admin_site.admin_view(self.discard_view),
                name="{}_{}_discard".format(*info),
            ),
            *super().get_urls(),
        ]

    def discard_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: discard one dead letter, then go back to the list."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        dead = self.get_object(request, object_id)
        if not can_manage_tenant(request, dead.tenant_id):
            raise PermissionDenied
        discarded = dead_letters_discard(tenant=dead.tenant, deliveries=[dead])
        if discarded:
            self.message_user(request, f"Dead letter {dead.uid} discarded.", messages.SUCCESS)
        else:
            self.message_user(
                request, f"{dead.uid} is no longer a dead letter; nothing discarded.", messages.WARNING
            )
        return HttpResponseRedirect(reverse("admin:deliveries_deadletter_changelist"))


def _by_tenant(queryset: QuerySet[Any]) -> dict[int, QuerySet[Delivery]]:
    """The selection's ids grouped by tenant, each as a light queryset for the services."""
    grouped: dict[int, list[int]] = {}
    for tenant_id, pk in queryset.order_by().values_list("tenant_id", "pk"):
        grouped.setdefault(tenant_id, []).append(pk)
    return {tid: Delivery.objects.filter(pk__in=ids).only("pk") for tid, ids in grouped.items()}


# --- Messages ----------------------------------------------------------------------


class MessageDeliveryInline(admin.TabularInline):  # type: ignore[type-arg]  # generic only in django-stubs
    """A message's deliveries, one per endpoint, linking to their attempts."""

    model = Delivery
    extra = 0
    can_delete = False
    fields = (
        "delivery_link",
        "endpoint_url",
        "status_display",
        "attempt_count",
        "last_status_code",
        "created_at",
    )
    readonly_fields = fields
    verbose_name_plural = "deliveries"
    show_change_link = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Delivery]:
        return super().get_queryset(request).select_related("endpoint").order_by("created_at", "pk")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="delivery")
    def delivery_link(self, obj: Delivery) -> SafeString:
        return admin_link("admin:deliveries_delivery_change", obj.pk, obj.uid)

    @admin.display(description="endpoint")
    def endpoint_url(self, obj: Delivery) -> str:
        return Truncator(obj.endpoint.url).chars(60)

    @admin.display(description="status")
    def status_display(self, obj: Delivery) -> SafeString:
        return status_badge(obj.status, obj.get_status_display())


@admin.register(Message)
class MessageAdmin(HistoryAdmin):
    list_display = ("created_at", "uid", "event_type_name", "idempotency_key")
    list_display_links = ("created_at", "uid")
    list_filter = (
        ("event_type", admin.RelatedFieldListFilter),
        ("created_at", admin.DateFieldListFilter),
        TenantFilter,
    )
    list_select_related = ("event_type",)
    search_fields = ("=uid",)
    search_help_text = "Exact message id (webhook-id) or idempotency key."
    inlines = (MessageDeliveryInline,)
    fields = ("uid", "tenant", "event_type_name", "idempotency_key", "created_at", "payload_display")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        # Payloads can be 256 KiB each; the detail page loads its one lazily.
        return (
            super()
            .get_queryset(request)
            .select_related("event_type", "tenant")
            .defer("payload", "request_hash")
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Message], search_term: str
    ) -> tuple[QuerySet[Message], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(pk__in=_matching_ids(_messages_matching(request, term))), False

    @admin.display(description="event type")
    def event_type_name(self, obj: Message) -> str:
        return obj.event_type.name

    @admin.display(description="payload")
    def payload_display(self, obj: Message) -> SafeString:
        return pretty_json(obj.payload)
