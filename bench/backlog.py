"""Worker memory across a large backlog: does RSS stay flat while millions wait?

The backlog is written straight into PostgreSQL (one ``INSERT … SELECT`` of
messages x endpoints), as if ingest had accepted it while no worker ran, so
building a million rows takes seconds, not the ingest path's minutes. Then the
production worker starts and works through it for a while, delivering to
nginx; its resident memory (process and children) is sampled every couple of
seconds. Growth is measured from the end of a warm-up (imports, connection
pools and caches filled) to the largest sample of the last third of the
window, so a slow leak shows and one-off start-up allocation does not.

The backlog is not drained (a million deliveries take far longer than the
benchmark may); the ledger here checks only that nothing arrived twice.
"""

from __future__ import annotations

import time
from typing import Any

from bench.env import BenchEnv
from bench.receivers import Nginx

ENDPOINTS = 1000


def fill(tenant_model: Any, event_type_name: str, pending: int) -> int:
    """Write ``pending`` due deliveries (messages x 1,000 endpoints); returns how many."""
    from django.db import connection, transaction
    from django.utils import timezone

    from deliveries.models import Delivery, Message
    from webhooks.models import Endpoint, EventType

    event_type = EventType.objects.get(name=event_type_name)
    endpoints = list(Endpoint.objects.filter(tenant=tenant_model).values_list("pk", flat=True))
    messages = max(1, pending // len(endpoints))
    now = timezone.now()
    with transaction.atomic():
        created = Message.objects.bulk_create(
            [
                Message(tenant=tenant_model, event_type=event_type, payload={"backlog": i}, created_at=now)
                for i in range(messages)
            ],
            batch_size=1000,
        )
        ids = [m.pk for m in created]
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                INSERT INTO {Delivery._meta.db_table}
                    (uid, tenant_id, message_id, endpoint_id, event_type_id, status, attempt_count,
                     next_attempt_at, next_trigger, schedule_offset, internal_failures, last_error,
                     replay_count, created_at, updated_at)
                SELECT 'dlv_backlog_' || m.id || '_' || e.id, %s, m.id, e.id, %s, 'pending', 0,
                       %s, 'scheduled', 0, 0, '', 0, %s, %s
                FROM unnest(%s::bigint[]) AS m(id) CROSS JOIN unnest(%s::bigint[]) AS e(id)
                """,
                [tenant_model.pk, event_type.pk, now, now, now, ids, endpoints],
            )
            inserted: int = cursor.rowcount
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Delivery._meta.db_table}")
    return inserted


def measure(
    env: BenchEnv, nginx: Nginx, stack: Any, *, warmup_seconds: float, seconds: float, interval: float = 2.0
) -> dict[str, Any]:
    """Sample the running worker's RSS; growth from after the warm-up to the last third's peak."""
    from deliveries.models import Delivery

    since = nginx.mark()
    time.sleep(warmup_seconds)
    samples: list[tuple[float, int]] = []
    begin = time.monotonic()
    while time.monotonic() - begin < seconds:
        samples.append((round(time.monotonic() - begin, 1), stack.rss_kb()))
        time.sleep(interval)
    arrivals = nginx.arrivals(since)
    keys = [(a.webhook_id, a.path) for a in arrivals if 200 <= a.status < 300]
    start_kb = samples[0][1]
    last_third = [kb for _, kb in samples[len(samples) * 2 // 3 :]]
    peak_kb = max(last_third)
    return {
        "rss_start_kb": start_kb,
        "rss_end_kb": samples[-1][1],
        "rss_peak_last_third_kb": peak_kb,
        "growth_pct": (peak_kb - start_kb) / start_kb * 100,
        "samples": samples,
        "delivered": len(set(keys)),
        "duplicates": len(keys) - len(set(keys)),
        "pending_left": Delivery.objects.filter(status="pending").count(),
        "warmup_seconds": warmup_seconds,
        "seconds": seconds,
    }
