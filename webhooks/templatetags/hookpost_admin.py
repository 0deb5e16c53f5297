"""Template tags of the Hookpost admin pages."""

from __future__ import annotations

from typing import Any

from django import template

from webhooks.admin_scoping import visible_tenants
from webhooks.models import Tenant

register = template.Library()

MAX_LISTED = 50


@register.simple_tag(takes_context=True)
def dashboard_tenants(context: dict[str, Any]) -> list[Tenant]:
    """The tenants whose dashboards the current user may open (at most 50, for the index page)."""
    request = context.get("request")
    if request is None:
        return []
    return list(visible_tenants(request).order_by("uid")[:MAX_LISTED])
