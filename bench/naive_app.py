"""The naive baseline: one plain Celery task per delivery doing ``requests.post``.

What a team writes in an afternoon: no database, no signing, no breaker, a new
``requests`` call (so a new connection) per delivery, and ``self.retry`` on
failure. Its own Celery app and queue (``bench.naive``) on the benchmark's
Redis DB, so it never sees Hookpost's tasks.

    celery -A bench.naive_app worker --pool threads --concurrency 16 -Q bench.naive
"""

from __future__ import annotations

import os

import requests
from celery import Celery, Task

QUEUE = "bench.naive"

app = Celery("bench_naive", broker=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"))
app.conf.update(
    task_default_queue=QUEUE,
    task_ignore_result=True,
    # The same delivery guarantees Hookpost's worker uses: ack after the work.
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
)


@app.task(bind=True, name="bench.naive.deliver", max_retries=5)
def deliver(self: Task[[str, str, str], None], url: str, body: str, webhook_id: str) -> None:
    """POST one webhook; retry with backoff on a connection error or a non-2xx answer."""
    try:
        response = requests.post(
            url,
            data=body,
            headers={"content-type": "application/json", "webhook-id": webhook_id},
            timeout=15,
        )
        response.raise_for_status()
    except requests.RequestException as exc:
        raise self.retry(exc=exc, countdown=5 * 2**self.request.retries) from exc
