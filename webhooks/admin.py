"""Admin for the configuration domain: tenants (with their dashboard), endpoints
(with secret, test event, recover and health), event types, API keys and
memberships.

Admin classes stay thin: every write goes through ``webhooks.services`` (and
``deliveries.replay`` / ``deliveries.services`` for recover and test events),
so the admin obeys the same rules as the API. Forms run ``endpoint_check``
in ``clean()`` so the service's refusals (target-address policy, headers,
retry schedule, in-flight cap) show as form errors before anything is saved. Tenant scoping
comes from ``webhooks.admin_scoping``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from config.numbers import NumberRejected, parse_decimal, parse_int
from deliveries.dashboard import bounded_count, endpoint_health, hourly_chart, tenant_dashboard
from deliveries.models import Delivery
from deliveries.replay import RECOVERABLE, endpoint_recover
from deliveries.services import message_publish_test
from webhooks import services
from webhooks.admin_changelist import StrictQueryAdmin
from webhooks.admin_scoping import (
    OperatorOnlyAdmin,
    TenantScopedAdmin,
    can_manage_tenant,
    visible_tenant_ids,
)
from webhooks.errors import Invalid, ServiceError
from webhooks.models import ApiKey, Endpoint, EndpointSecret, EventType, Membership, Tenant
from webhooks.selectors import endpoint_signing_secrets

admin.site.site_header = "Hookpost"
admin.site.site_title = "Hookpost admin"
admin.site.index_title = "Webhooks"
admin.site.index_template = "admin/hookpost_index.html"
admin.site.site_url = None  # there is no public site to link to

# The rotation form asks for hours; the service's bound is in seconds.
MAX_GRACE_HOURS = Decimal(services.MAX_GRACE_SECONDS) / 3600

CIRCUIT_COLORS = {
    Endpoint.CircuitState.CLOSED: "#2e7d32",
    Endpoint.CircuitState.HALF_OPEN: "#ef6c00",
    Endpoint.CircuitState.OPEN: "#c62828",
}


def _badge(color: str, text: str) -> SafeString:
    return format_html('<span class="hp-badge" style="background:{}">{}</span>', color, text)


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f} %"


def _summary_for_delete(
    objs: list[Model], related: dict[str, int]
) -> tuple[list[str], dict[str, int], set[str], list[str]]:
    """What Django's delete confirmation shows, without walking every related row.

    Django's default collects every object the deletion cascades to, and asks
    for delete permission on each model: on an endpoint with a million
    deliveries that is a million rows, and tenant users may not delete
    history rows one by one (the service deletes them with the endpoint).
    """
    return [str(obj) for obj in objs], related, set(), []


# --- Tenants ------------------------------------------------------------------------


class MembershipInline(admin.TabularInline):  # type: ignore[type-arg]  # generic only in django-stubs
    model = Membership
    extra = 0
    autocomplete_fields = ("user",)
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdmin):
    """Tenants: operators create and edit them; members see theirs and its dashboard."""

    tenant_path = "pk"
    list_display = ("uid", "name", "retention_days", "created_at", "dashboard_link")
    search_fields = ("uid", "name")
    fields = ("uid", "name", "retention_days", "created_at")
    inlines = (MembershipInline,)

    class Media:
        css = {"all": ("hookpost/admin.css",)}

    def tenant_id_of(self, obj: Any) -> int:
        return int(obj.pk)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("uid", "created_at") if obj is not None else ("created_at",)

    # Tenants are the operators' to create, rename and delete.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)

    def save_model(
        self, request: HttpRequest, obj: Tenant, form: forms.ModelForm[Tenant], change: bool
    ) -> None:
        if change:
            services.tenant_update(tenant=obj, data=form.cleaned_data)
        else:
            created = services.tenant_create(uid=obj.uid, name=obj.name, retention_days=obj.retention_days)
            obj.pk, obj.created_at = created.pk, created.created_at
            obj._state.adding = False

    def delete_model(self, request: HttpRequest, obj: Tenant) -> None:
        services.tenant_delete(tenant=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        for tenant in queryset:
            services.tenant_delete(tenant=tenant)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        objs = list(objs)
        ids = [o.pk for o in objs]
        return _summary_for_delete(
            objs,
            {
                "endpoints": Endpoint.objects.filter(tenant_id__in=ids).count(),
                "deliveries (at least)": bounded_count(Delivery.objects.filter(tenant_id__in=ids), 100_000),
            },
        )

    @admin.display(description="dashboard")
    def dashboard_link(self, obj: Tenant) -> SafeString:
        return format_html(
            '<a href="{}">Dashboard</a>', reverse("admin:webhooks_tenant_dashboard", args=[obj.pk])
        )

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/dashboard/",
                self.admin_site.admin_view(self.dashboard_view),
                name="webhooks_tenant_dashboard",
            ),
            *super().get_urls(),
        ]

    def dashboard_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The tenant's last 24 hours: deliveries per hour by outcome, unhealthy endpoints, dead letters."""
        tenant = self.get_object(request, object_id)  # 404 outside the user's tenants
        if not self.has_view_permission(request, tenant):
            raise PermissionDenied
        data = tenant_dashboard(tenant=tenant)
        dead_letters_url = reverse("admin:deliveries_deadletter_changelist")
        ids = visible_tenant_ids(request)
        if ids is None or len(ids) > 1:  # the tenant filter is only offered then
            dead_letters_url += f"?tenant={tenant.pk}"
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Dashboard: {tenant.name}",
            "tenant": tenant,
            "dashboard": data,
            "chart": hourly_chart(data.hours),
            "success_rate": _percent(data.success_rate),
            "total_24h": sum(data.totals.values()),
            "dead_letters_url": dead_letters_url,
        }
        return TemplateResponse(request, "admin/webhooks/tenant/dashboard.html", context)


@admin.register(Membership)
class MembershipAdmin(OperatorOnlyAdmin):
    list_display = ("user", "tenant", "role", "created_at")
    list_filter = ("role",)
    list_select_related = ("user", "tenant")
    autocomplete_fields = ("user", "tenant")
    search_fields = ("user__username", "tenant__uid")


@admin.register(ApiKey)
class ApiKeyAdmin(OperatorOnlyAdmin):
    """API keys are created with ``manage.py create_api_key`` (the key is shown
    once); here operators list and revoke them."""

    list_display = ("prefix", "name", "tenant", "created_at", "last_used_at", "expires_at", "revoked_at")
    list_filter = ("revoked_at",)
    list_select_related = ("tenant",)
    search_fields = ("prefix", "name", "tenant__uid")
    readonly_fields = (
        "uid",
        "prefix",
        "name",
        "tenant",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    )
    actions = ("revoke_selected",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser)

    @admin.action(description="Revoke selected API keys", permissions=("revoke",))
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        keys = list(queryset.filter(revoked_at__isnull=True))
        for key in keys:
            services.api_key_revoke(key=key)
        self.message_user(request, f"{len(keys)} API key(s) revoked.", messages.SUCCESS)


@admin.register(EventType)
class EventTypeAdmin(StrictQueryAdmin):
    """The platform's event-type catalogue: readable by every staff user (it is
    global, like ``GET /event-types/``); operators manage it through the API
    and may archive or restore types here."""

    list_display = ("name", "description", "archived", "created_at")
    list_filter = ("archived",)
    search_fields = ("name",)
    readonly_fields = ("name", "description", "schema", "archived", "created_at", "updated_at")
    actions = ("archive_selected", "restore_selected")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_archive_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser)

    @admin.action(description="Archive selected event types", permissions=("archive",))
    def archive_selected(self, request: HttpRequest, queryset: QuerySet[EventType]) -> None:
        for event_type in queryset:
            services.event_type_update(event_type=event_type, data={"archived": True})
        self.message_user(request, "Archived.", messages.SUCCESS)

    @admin.action(description="Restore selected event types", permissions=("archive",))
    def restore_selected(self, request: HttpRequest, queryset: QuerySet[EventType]) -> None:
        for event_type in queryset:
            services.event_type_update(event_type=event_type, data={"archived": False})
        self.message_user(request, "Restored.", messages.SUCCESS)


# --- Endpoints ----------------------------------------------------------------------

# Fields the form edits and ``endpoint_update`` accepts.
ENDPOINT_FIELDS = (
    "url",
    "description",
    "event_types",
    "enabled",
    "headers",
    "rate_limit",
    "max_in_flight",
    "timeout_seconds",
    "retry_schedule",
)


class StrictIntegerField(forms.IntegerField):
    """An integer typed in ASCII digits, within ``min_value``..``max_value``
    (``config.numbers.parse_int``): Django's own field also takes other scripts'
    digits (``"٣"``) and ``"5.0"``."""

    def to_python(self, value: Any) -> int | None:
        text = "" if value in self.empty_values else str(value).strip()
        if not text:
            return None
        try:
            return parse_int(
                text,
                minimum=int(self.min_value or 0),  # type: ignore[arg-type]  # our bounds are ints, never callables
                maximum=int(self.max_value or 2**31 - 1),  # type: ignore[arg-type]  # as above
            )
        except NumberRejected as exc:
            raise ValidationError(str(exc), code="invalid") from exc


class EndpointForm(forms.ModelForm):  # type: ignore[type-arg]  # generic only in django-stubs
    """Endpoint fields, validated by the service's own rules (``endpoint_check``)."""

    url = forms.URLField(
        label="URL",
        max_length=2048,
        assume_scheme="https",
        help_text="Where Hookpost POSTs the events. Private and local addresses are refused.",
    )
    event_types = forms.ModelMultipleChoiceField(
        queryset=EventType.objects.filter(archived=False),
        required=False,
        widget=FilteredSelectMultiple("event types", is_stacked=False),
        help_text="Leave empty to receive every event type.",
    )
    headers = forms.JSONField(
        required=False,
        initial=dict,
        help_text=(
            'Extra HTTP headers sent with every request, e.g. {"X-Team": "billing"}. '
            "Names: letters, digits and !#$%&'*+-.^_`|~; values: ASCII or Latin-1 characters."
        ),
    )
    retry_schedule = forms.JSONField(
        required=False,
        help_text="Seconds between attempts, e.g. [5, 300, 1800]. Empty: the platform default.",
    )
    max_in_flight = StrictIntegerField(required=False, min_value=1, label="Max in flight")

    class Meta:
        model = Endpoint
        fields = ("tenant", *ENDPOINT_FIELDS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The bounds are settings: read them per form, not once at import.
        cap = cast(StrictIntegerField, self.fields["max_in_flight"])
        limit = settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT_LIMIT
        cap.max_value = limit
        cap.widget.attrs["max"] = limit
        cap.help_text = (
            f"Requests in flight to this endpoint at once, across all workers: 1 to {limit:,}. "
            f"Empty: the platform default ({settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT})."
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("headers") is None and "headers" in cleaned:
            cleaned["headers"] = {}
        adding = self.instance.pk is None
        names = ("url", "headers", "retry_schedule", "max_in_flight", "event_types")
        checked = {n: cleaned[n] for n in names if n in cleaned and (adding or n in self.changed_data)}
        if "event_types" in checked:
            checked["event_types"] = [et.name for et in checked["event_types"]]
        try:
            services.endpoint_check(data=checked)
        except Invalid as exc:
            for name, problems in exc.details.items():
                self.add_error(name if name in self.fields else None, problems)
        return cleaned


class RecoverForm(forms.Form):
    since = forms.DateTimeField(
        label="From (UTC)",
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    until = forms.DateTimeField(
        label="Until (UTC)",
        required=False,
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Empty: until now.",
    )
    statuses = forms.MultipleChoiceField(
        choices=[(s, Delivery.Status(s).label) for s in RECOVERABLE],
        widget=forms.CheckboxSelectMultiple,
        initial=list(RECOVERABLE),
    )


class EndpointAdmin(TenantScopedAdmin):
    """A tenant's endpoints: edit, secret, test event, recover, and health at a glance."""

    form = EndpointForm
    change_form_template = "admin/webhooks/endpoint/change_form.html"
    list_display = (
        "url_display",
        "description",
        "event_types_display",
        "enabled_display",
        "circuit_display",
        "success_rate_24h",
        "last_success_at",
        "last_failure_at",
        "created_at",
    )
    list_display_links = ("url_display",)
    list_filter = ("enabled", "circuit_state")
    search_fields = ("url", "description", "=uid")
    list_per_page = 50
    actions = ("enable_selected", "disable_selected")

    class Media:
        css = {"all": ("hookpost/admin.css",)}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Endpoint]:
        return super().get_queryset(request).select_related("tenant").prefetch_related("event_types")

    def get_list_display(self, request: HttpRequest) -> Any:
        shown = list(super().get_list_display(request))
        ids = visible_tenant_ids(request)
        if ids is None or len(ids) > 1:
            shown.insert(1, "tenant")
        return shown

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        return (
            "uid",
            "tenant",
            "signing_secret",
            "circuit_display",
            "success_rate_24h",
            "consecutive_failures",
            "last_success_at",
            "last_failure_at",
            "failing_since",
            "disabled_reason",
            "disabled_at",
            "created_at",
        )

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        main = (None, {"fields": ("tenant", "url", "description", "event_types", "enabled")})
        delivery = (
            "Delivery",
            {"fields": ("headers", "rate_limit", "max_in_flight", "timeout_seconds", "retry_schedule")},
        )
        if obj is None:
            return (main, delivery)
        return (
            (None, {"fields": ("uid", "tenant", "url", "description", "event_types", "enabled")}),
            delivery,
            # Viewers may read the endpoint, not its secret.
            *(
                [("Signing secret", {"fields": ("signing_secret",)})]
                if can_manage_tenant(request, obj.tenant_id)
                else []
            ),
            (
                "Health",
                {
                    "fields": (
                        "circuit_display",
                        "success_rate_24h",
                        "consecutive_failures",
                        "last_success_at",
                        "last_failure_at",
                        "failing_since",
                        "disabled_reason",
                        "disabled_at",
                        "created_at",
                    )
                },
            ),
        )

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        tenant_field = cast("forms.ModelChoiceField[Tenant] | None", form.base_fields.get("tenant"))
        if tenant_field is not None:
            choices = tenant_field.queryset  # scoped to managed tenants by formfield_for_foreignkey
            if choices is not None and choices.count() == 1 and (only := choices.first()) is not None:
                tenant_field.initial = only.pk
        return form

    # -- list columns -------------------------------------------------------------------
    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        page = list(changelist.result_list)  # the page only; cached for rendering
        health = endpoint_health(endpoint_ids=[e.pk for e in page])
        for endpoint in page:
            endpoint.health_24h = health.get(endpoint.pk)
        return changelist

    @admin.display(description="URL", ordering="url")
    def url_display(self, obj: Endpoint) -> str:
        return Truncator(obj.url).chars(70)

    @admin.display(description="event types")
    def event_types_display(self, obj: Endpoint) -> str:
        names = sorted(et.name for et in obj.event_types.all())
        return ", ".join(names) if names else "all"

    @admin.display(description="enabled", ordering="enabled")
    def enabled_display(self, obj: Endpoint) -> SafeString:
        if obj.enabled:
            return _badge("#2e7d32", "enabled")
        return format_html(
            '{} <span class="quiet">{}</span>',
            _badge("#757575", "disabled"),
            Truncator(obj.disabled_reason).chars(60),
        )

    @admin.display(description="circuit", ordering="circuit_state")
    def circuit_display(self, obj: Endpoint) -> SafeString:
        state = (
            Endpoint.CircuitState(obj.circuit_state)
            if obj.circuit_state in Endpoint.CircuitState.values
            else None
        )
        if state is None:
            return _badge("#555", obj.circuit_state)
        return _badge(CIRCUIT_COLORS[state], state.label)

    @admin.display(description="success 24 h")
    def success_rate_24h(self, obj: Endpoint) -> str:
        health = getattr(obj, "health_24h", None)
        if health is None:  # the change page: one endpoint
            health = endpoint_health(endpoint_ids=[obj.pk]).get(obj.pk)
        if health is None or health.success_rate is None:
            return "—"
        return f"{_percent(health.success_rate)} ({health.succeeded:,}/{health.attempted:,})"

    @admin.display(description="signing secret")
    def signing_secret(self, obj: Endpoint) -> SafeString:
        url = reverse("admin:webhooks_endpoint_secret", args=[obj.pk])
        return format_html(
            '<span class="hp-secret">whsec_••••••••</span> <a href="{}" id="hp-reveal">Reveal or rotate</a>',
            url,
        )

    # -- writes through the services ---------------------------------------------------
    def save_model(self, request: HttpRequest, obj: Endpoint, form: EndpointForm, change: bool) -> None:
        data = form.cleaned_data
        names = [et.name for et in data.get("event_types") or []]
        if not change:
            created = services.endpoint_create(
                tenant=data["tenant"],
                url=data["url"],
                description=data.get("description") or "",
                event_types=names,
                enabled=data.get("enabled", True),
                headers=data.get("headers") or {},
                rate_limit=data.get("rate_limit"),
                max_in_flight=data.get("max_in_flight"),
                timeout_seconds=data.get("timeout_seconds"),
                retry_schedule=data.get("retry_schedule"),
            )
            saved = created.endpoint
        else:
            changed = {n: data[n] for n in ENDPOINT_FIELDS if n in form.changed_data and n in data}
            if "event_types" in changed:
                changed["event_types"] = names
            saved = services.endpoint_update(endpoint=Endpoint.objects.get(pk=obj.pk), data=changed)
        # The admin goes on with ``obj`` (log entry, redirect): make it the saved row.
        for field in Endpoint._meta.concrete_fields:
            setattr(obj, field.attname, getattr(saved, field.attname))
        obj._state.adding = False
        obj._state.db = saved._state.db

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # The service has set the event types already; ``form.save_m2m`` would
        # write them again from the unsaved form instance.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def delete_model(self, request: HttpRequest, obj: Endpoint) -> None:
        services.endpoint_delete(endpoint=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        for endpoint in queryset:
            if can_manage_tenant(request, endpoint.tenant_id):
                services.endpoint_delete(endpoint=endpoint)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        objs = list(objs)
        deliveries = bounded_count(Delivery.objects.filter(endpoint__in=objs), 100_000)
        return _summary_for_delete(
            objs, {"endpoints": len(objs), "deliveries and their attempts": deliveries}
        )

    @admin.action(description="Enable selected endpoints", permissions=("change",))
    def enable_selected(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable selected endpoints", permissions=("change",))
    def disable_selected(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        self._set_enabled(request, queryset, False)

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet[Endpoint], enabled: bool) -> None:
        changed = 0
        for endpoint in queryset.filter(enabled=not enabled):
            if can_manage_tenant(request, endpoint.tenant_id):
                services.endpoint_update(endpoint=endpoint, data={"enabled": enabled})
                self.log_change(request, endpoint, "Enabled." if enabled else "Disabled.")
                changed += 1
        self.message_user(
            request, f"{changed} endpoint(s) {'enabled' if enabled else 'disabled'}.", messages.SUCCESS
        )

    # -- object tools: secret, test event, recover ---------------------------------------
    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Endpoint | None = None,
    ) -> HttpResponse:
        context["can_manage"] = bool(obj is not None and can_manage_tenant(request, obj.tenant_id))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_urls(self) -> list[URLPattern]:
        def view(name: str, func: Callable[..., HttpResponse]) -> URLPattern:
            return path(
                f"<path:object_id>/{name}/",
                self.admin_site.admin_view(func),
                name=f"webhooks_endpoint_{name.replace('-', '_')}",
            )

        return [
            view("secret", self.secret_view),
            view("test-event", self.test_event_view),
            view("recover", self.recover_view),
            *super().get_urls(),
        ]

    def _managed_object(self, request: HttpRequest, object_id: str) -> Endpoint:
        endpoint: Endpoint = self.get_object(request, object_id)  # 404 outside the user's tenants
        if not can_manage_tenant(request, endpoint.tenant_id) or not self.has_view_permission(
            request, endpoint
        ):
            raise PermissionDenied
        return endpoint

    def _context(self, request: HttpRequest, endpoint: Endpoint, title: str) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": endpoint,
            "title": title,
        }

    def secret_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: show the signing secrets (recorded in the history). POST: rotate."""
        endpoint = self._managed_object(request, object_id)
        if request.method == "POST":
            try:
                grace_hours = parse_decimal(
                    request.POST.get("grace_hours", "24"), minimum=0, maximum=MAX_GRACE_HOURS
                )
                services.endpoint_secret_rotate(endpoint=endpoint, grace_seconds=int(grace_hours * 3600))
            except (NumberRejected, ServiceError) as exc:
                text = (
                    exc.message
                    if isinstance(exc, ServiceError)
                    else f"The grace period must be {exc.requirement} hours."
                )
                if isinstance(exc, Invalid) and exc.details:
                    text += " " + " ".join(m for msgs in exc.details.values() for m in msgs)
                self.message_user(request, text, messages.ERROR)
            else:
                self.log_change(request, endpoint, "Rotated the signing secret.")
                self.message_user(
                    request,
                    f"Secret rotated. The previous secret keeps signing for {grace_hours:g} hours.",
                    messages.SUCCESS,
                )
            return HttpResponseRedirect(reverse("admin:webhooks_endpoint_secret", args=[endpoint.pk]))
        self.log_change(request, endpoint, "Revealed the signing secret.")
        now = timezone.now()
        secrets = EndpointSecret.objects.filter(endpoint=endpoint).order_by("-created_at")
        context = {
            **self._context(request, endpoint, "Signing secret"),
            "current": next((s for s in secrets if s.expires_at is None), None),
            "previous": [s for s in secrets if s.expires_at is not None and s.expires_at > now],
            "signing_count": len(endpoint_signing_secrets(endpoint=endpoint)),
        }
        return TemplateResponse(request, "admin/webhooks/endpoint/secret.html", context)

    def test_event_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: send a ``hookpost.test`` event to this endpoint only."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        endpoint = self._managed_object(request, object_id)
        try:
            delivery = message_publish_test(endpoint=endpoint)
        except ServiceError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(reverse("admin:webhooks_endpoint_change", args=[endpoint.pk]))
        self.log_change(request, endpoint, "Sent a test event.")
        self.message_user(
            request,
            format_html(
                'Test event queued: <a href="{}">delivery {}</a>.',
                reverse("admin:deliveries_delivery_change", args=[delivery.pk]),
                delivery.uid,
            ),
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:webhooks_endpoint_change", args=[endpoint.pk]))

    def recover_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Replay the endpoint's failed/dead/skipped deliveries of a time window."""
        endpoint = self._managed_object(request, object_id)
        if request.method == "POST":
            form = RecoverForm(request.POST)
            if form.is_valid():
                try:
                    count = endpoint_recover(
                        endpoint=endpoint,
                        since=form.cleaned_data["since"],
                        until=form.cleaned_data["until"],
                        statuses=form.cleaned_data["statuses"],
                    )
                except ServiceError as exc:
                    for name, problems in getattr(exc, "details", {}).items():
                        form.add_error(name if name in form.fields else None, problems)
                    if not getattr(exc, "details", None):
                        form.add_error(None, exc.message)
                else:
                    self.log_change(request, endpoint, f"Recovered {count} deliveries.")
                    self.message_user(
                        request,
                        f"{count} deliver{'y' if count == 1 else 'ies'} queued for replay; "
                        "new attempts appear in the history.",
                        messages.SUCCESS,
                    )
                    changelist = reverse("admin:deliveries_delivery_changelist")
                    return HttpResponseRedirect(f"{changelist}?endpoint={endpoint.pk}")
        else:
            now = timezone.now().replace(second=0, microsecond=0)
            form = RecoverForm(initial={"since": now - timedelta(hours=24), "statuses": list(RECOVERABLE)})
        context = {**self._context(request, endpoint, "Recover failed deliveries"), "form": form}
        return TemplateResponse(request, "admin/webhooks/endpoint/recover.html", context)


admin.site.register(Endpoint, EndpointAdmin)
