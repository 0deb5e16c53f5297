"""Query-parameter filters of the history lists (``?status=&endpoint=…``)."""
from __future__ import annotations

import django_filters

from deliveries.models import Delivery, Message


class MessageFilter(django_filters.FilterSet):
    event_type = django_filters.CharFilter(field_name="event_type__name")
    after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gt")
    before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Message
        fields: list[str] = []


class DeliveryFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Delivery.Status.choices)
    endpoint = django_filters.CharFilter(field_name="endpoint__uid", help_text="An endpoint id, ep_…")
    event_type = django_filters.CharFilter(field_name="event_type__name")
    message = django_filters.CharFilter(field_name="message__uid", help_text="A message id")
    after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gt")
    before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Delivery
        fields: list[str] = []
