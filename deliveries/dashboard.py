"""Reads for the tenant dashboard and the endpoint health columns of the admin.

- ``endpoint_health``: per endpoint, the share of its last-24-hour deliveries
  that succeeded, in one grouped query for a whole page of endpoints;
- ``tenant_dashboard``: deliveries per hour by outcome over 24 hours, the
  endpoints whose circuit is not closed or that are disabled, and how many
  dead letters wait;
- ``hourly_chart``: the geometry of a stacked bar chart of those hours, which
  the dashboard template draws as inline SVG (no JavaScript, no CDN).

Every query is bounded by the ``(tenant|endpoint, created DESC)`` indexes and
a 24-hour window, or by ``bounded_count``'s cap.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, QuerySet
from django.db.models.functions import TruncHour
from django.utils import timezone

from deliveries.models import Delivery
from webhooks.models import Endpoint, Tenant

WINDOW = timedelta(hours=24)
DEAD_LETTER_COUNT_CAP = 100_000
# Stacking order, bottom first, and how each outcome is drawn.
OUTCOMES: tuple[tuple[str, str, str], ...] = (
    (Delivery.Status.SUCCEEDED, "Succeeded", "#2e7d32"),
    (Delivery.Status.FAILED, "Failed, retrying", "#ef6c00"),
    (Delivery.Status.DEAD, "Dead letter", "#c62828"),
    (Delivery.Status.PENDING, "Pending", "#1565c0"),
    (Delivery.Status.SKIPPED, "Skipped", "#9e9e9e"),
)
# Outcomes that count towards a success rate: delivered, or tried and not (yet) delivered.
_ATTEMPTED = (Delivery.Status.SUCCEEDED, Delivery.Status.FAILED, Delivery.Status.DEAD)


@dataclass(frozen=True)
class EndpointHealth:
    """Deliveries to one endpoint created in the last 24 hours, by outcome."""

    succeeded: int = 0
    attempted: int = 0  # succeeded + failed (retrying) + dead

    @property
    def success_rate(self) -> float | None:
        """Succeeded / attempted, or None when nothing was attempted."""
        return self.succeeded / self.attempted if self.attempted else None


@dataclass(frozen=True)
class HourBucket:
    start: datetime
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class Dashboard:
    tenant: Tenant
    since: datetime
    hours: list[HourBucket]
    totals: dict[str, int]
    unhealthy_endpoints: list[Endpoint]
    dead_letters: int
    dead_letters_capped: bool

    @property
    def success_rate(self) -> float | None:
        attempted = sum(self.totals.get(s, 0) for s in _ATTEMPTED)
        return self.totals.get(Delivery.Status.SUCCEEDED, 0) / attempted if attempted else None


@dataclass(frozen=True)
class Bar:
    """One coloured segment of the stacked chart (SVG user units)."""

    x: float
    y: float
    width: float
    height: float
    color: str
    title: str


@dataclass(frozen=True)
class Tick:
    x: float
    y: float
    label: str


@dataclass
class Chart:
    width: int
    height: int
    plot_left: int
    plot_bottom: int
    plot_right: int
    bars: list[Bar] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)


def endpoint_health(*, endpoint_ids: Sequence[int], now: datetime | None = None) -> dict[int, EndpointHealth]:
    """Health of each endpoint in ``endpoint_ids`` over the 24 hours before ``now``.

    One query, whatever the number of endpoints; endpoints without deliveries
    map to an empty ``EndpointHealth``.
    """
    if not endpoint_ids:
        return {}
    since = (now or timezone.now()) - WINDOW
    rows = (
        Delivery.objects.filter(endpoint_id__in=list(endpoint_ids), created_at__gte=since)
        .order_by()
        .values_list("endpoint_id", "status")
        .annotate(n=Count("id"))
    )
    succeeded: dict[int, int] = defaultdict(int)
    attempted: dict[int, int] = defaultdict(int)
    for endpoint_id, status, n in rows:
        if status == Delivery.Status.SUCCEEDED:
            succeeded[endpoint_id] += n
        if status in _ATTEMPTED:
            attempted[endpoint_id] += n
    return {
        pk: EndpointHealth(succeeded=succeeded.get(pk, 0), attempted=attempted.get(pk, 0))
        for pk in endpoint_ids
    }


def tenant_dashboard(*, tenant: Tenant, now: datetime | None = None) -> Dashboard:
    """Everything the tenant dashboard shows, for the 24 hours before ``now``."""
    now = now or timezone.now()
    first_hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    rows = (
        Delivery.objects.filter(tenant=tenant, created_at__gte=first_hour)
        # Without clearing the model's ordering, Django would group by it too.
        .order_by()
        .annotate(hour=TruncHour("created_at"))
        .values_list("hour", "status")
        .annotate(n=Count("id"))
    )
    by_hour: dict[datetime, dict[str, int]] = defaultdict(dict)
    totals: dict[str, int] = defaultdict(int)
    for hour, status, n in rows:
        by_hour[hour][status] = n
        totals[status] += n
    hours = [
        HourBucket(start=start, counts=by_hour.get(start, {}))
        for start in (first_hour + timedelta(hours=i) for i in range(24))
    ]
    unhealthy = list(
        Endpoint.objects.filter(tenant=tenant)
        .exclude(circuit_state=Endpoint.CircuitState.CLOSED, enabled=True)
        .order_by("-enabled", "url")[:100]
    )
    dead = bounded_count(
        Delivery.objects.filter(tenant=tenant, status=Delivery.Status.DEAD), DEAD_LETTER_COUNT_CAP
    )
    return Dashboard(
        tenant=tenant,
        since=first_hour,
        hours=hours,
        totals=dict(totals),
        unhealthy_endpoints=unhealthy,
        dead_letters=min(dead, DEAD_LETTER_COUNT_CAP),
        dead_letters_capped=dead > DEAD_LETTER_COUNT_CAP,
    )


def bounded_count(qs: QuerySet[Delivery], cap: int) -> int:
    """``min(count, cap + 1)`` without reading more than ``cap + 1`` rows."""
    return qs.values("pk").order_by()[: cap + 1].count()


def hourly_chart(hours: Iterable[HourBucket], *, width: int = 760, height: int = 240) -> Chart:
    """Lay out a stacked bar per hour; every label is plain text for the template to escape."""
    buckets = list(hours)
    left, right, top, bottom = 48, width - 8, 12, height - 28
    chart = Chart(width=width, height=height, plot_left=left, plot_bottom=bottom, plot_right=right)
    chart.legend = [(label, color) for _, label, color in OUTCOMES]
    peak = _nice_ceiling(max((b.total for b in buckets), default=0))
    scale = (bottom - top) / peak
    # Counts are whole numbers: no half-way tick when it would not be one.
    for value in sorted({0, peak // 2, peak} if peak % 2 == 0 else {0, peak}):
        chart.y_ticks.append(Tick(x=left - 6, y=bottom - value * scale, label=f"{value:,}"))
    if not buckets:
        return chart
    slot = (right - left) / len(buckets)
    for index, bucket in enumerate(buckets):
        x = left + index * slot + 1
        y = float(bottom)
        for status, label, color in OUTCOMES:
            n = bucket.counts.get(status, 0)
            if not n:
                continue
            h = n * scale
            y -= h
            chart.bars.append(
                Bar(
                    x=round(x, 2),
                    y=round(y, 2),
                    width=round(slot - 2, 2),
                    height=round(h, 2),
                    color=color,
                    title=f"{bucket.start:%H:%M} UTC: {n:,} {label.lower()}",
                )
            )
        if index % 3 == 0:
            chart.x_ticks.append(
                Tick(x=round(x + (slot - 2) / 2, 2), y=bottom + 16, label=f"{bucket.start:%H:%M}")
            )
    return chart


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 x 10^k that is >= value (at least 1)."""
    if value <= 1:
        return 1
    magnitude = 1
    while True:
        for step in (1, 2, 5):
            if step * magnitude >= value:
                return step * magnitude
        magnitude *= 10
