"""Query-parameter filters of the history lists (``?status=&endpoint=…``)."""

from __future__ import annotations

import datetime
from typing import Any

import django_filters
from django.core.exceptions import ValidationError
from django_filters.fields import IsoDateTimeField

from deliveries.models import Delivery, Message


class _UtcIsoDateTimeField(IsoDateTimeField):
    """ISO 8601 in, UTC out. PostgreSQL refuses UTC offsets beyond 15:59 that
    Python accepts, and a time outside years 1-9999 in UTC is bad input (422),
    not a server error."""

    def to_python(self, value: Any) -> datetime.datetime | None:
        parsed: datetime.datetime | None = super().to_python(value)
        if parsed is None:
            return None
        try:
            return parsed.astimezone(datetime.UTC)
        except OverflowError as exc:
            raise ValidationError(self.error_messages["invalid"], code="invalid") from exc


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = _UtcIsoDateTimeField


class MessageFilter(django_filters.FilterSet):
    event_type = django_filters.CharFilter(field_name="event_type__name")
    after = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gt")
    before = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Message
        fields: list[str] = []


class DeliveryFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Delivery.Status.choices)
    endpoint = django_filters.CharFilter(field_name="endpoint__uid", help_text="An endpoint id, ep_…")
    event_type = django_filters.CharFilter(field_name="event_type__name")
    message = django_filters.CharFilter(field_name="message__uid", help_text="A message id")
    after = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gt")
    before = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Delivery
        fields: list[str] = []
