"""Compare Celery worker pools for delivery throughput (issue 3's pool choice).

For each pool: publish N messages to one endpoint on a local receiver while no
worker runs, start a worker with that pool, and time first-to-last arrival at
the receiver. Uses its own database (hookpost_bench) and Redis DB 12.

    .venv/bin/python -m bench.pool_compare --messages 2000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DB_URL = "postgres://postgres@127.0.0.1:5432/hookpost_bench"
REDIS = "redis://127.0.0.1:6379/12"
os.environ.update(
    DJANGO_SETTINGS_MODULE="config.settings",
    DEBUG="true",
    DATABASE_URL=DB_URL,
    REDIS_URL=REDIS,
    HOOKPOST_ALLOWED_TARGET_NETWORKS="127.0.0.0/8",
    LOG_LEVEL="WARNING",
)
sys.path.insert(0, str(ROOT))

import django  # noqa: E402

from bench import process_groups  # noqa: E402

POOLS = [
    ("solo", 1),
    ("prefork", 2),
    ("prefork", 4),
    ("threads", 8),
    ("threads", 32),
    ("gevent", 64),
]


def setup_db() -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c", "DROP DATABASE IF EXISTS hookpost_bench"],
        check=True,
    )
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c", "CREATE DATABASE hookpost_bench"],
        check=True,
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def run_pool(pool: str, concurrency: int, messages: int) -> float | None:
    import redis

    from deliveries.models import Delivery
    from deliveries.services import NewMessage, message_publish_batch
    from tests.e2e.receiver import Receiver
    from webhooks import services
    from webhooks.models import EventType, Tenant

    redis.Redis.from_url(REDIS).flushdb()
    Delivery.objects.all().delete()
    tenant = Tenant.objects.filter(uid="bench").first() or services.tenant_create(uid="bench", name="bench")
    if not EventType.objects.filter(name="bench.event").exists():
        services.event_type_create(name="bench.event")
    receiver = Receiver().start()
    tenant.endpoints.all().delete()
    services.endpoint_create(tenant=tenant, url=receiver.url("/hook"))
    for start in range(0, messages, 500):
        batch = [
            NewMessage(event_type="bench.event", payload={"i": i})
            for i in range(start, min(start + 500, messages))
        ]
        message_publish_batch(tenant=tenant, batch=batch)
    env = {**os.environ, "HOOKPOST_SCHEDULER_INTERVAL_SECONDS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        env["CELERY_BEAT_SCHEDULE_FILENAME"] = f"{tmp}/beat"
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-B",
            "--pool",
            pool,
            "--concurrency",
            str(concurrency),
            "-Q",
            "deliveries.first,deliveries.retry,maintenance",
            "--loglevel",
            os.environ.get("BENCH_LOGLEVEL", "WARNING"),
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
        with open(f"{tmp}/err", "wb") as err:
            proc = process_groups.start(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
        try:
            receiver.wait_for(messages, "/hook", timeout=300)
        except AssertionError as exc:
            print(f"{pool}/{concurrency}: {exc}; stderr tail: {open(f'{tmp}/err').read()[-500:]}")
            return None
        finally:
            process_groups.stop(proc, grace=30)
            receiver.stop()
    arrivals = sorted(r.at for r in receiver.requests)
    return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--pools", default=",".join(f"{p}:{c}" for p, c in POOLS))
    args = parser.parse_args()
    setup_db()
    for item in args.pools.split(","):
        pool, concurrency = item.split(":")
        rate = run_pool(pool, int(concurrency), args.messages)
        print(
            f"{pool:8s} concurrency={concurrency:>3}: {rate:.0f} deliveries/s" if rate else f"{pool} failed",
            flush=True,
        )


if __name__ == "__main__":
    main()
