"""Hookpost's measurements: ingest, end-to-end throughput (1:1 and fan-out), latency, isolation.

Processes are the production ones (docs/operations.md): gunicorn with
config/gunicorn.py for the API; for delivery, ``WORKER_PROCESSES`` workers
``celery -A config worker --pool threads --concurrency 16 -Q deliveries.first,maintenance``
(the first with the embedded scheduler, ``-B``) and one for the retry lane;
DEBUG off.

Publishing for the delivery scenarios goes through ``deliveries.services`` in
this process (the same transaction and after-commit hand-off the API runs),
so what is timed is the delivery path, not our HTTP client; the API itself is
measured by the ingest scenario.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3

from bench import ledger
from bench.env import WORKER_PROCESSES, BenchEnv, Process, flush_redis, free_port, wait_port, worker_command
from bench.receivers import Arrival, Hanging, Nginx, refused_url, wait_for_arrivals
from bench.stats import percentile

EVENT_TYPE = "bench.event"
PAYLOAD: dict[str, Any] = {"order": 1234, "amount": "19.99", "currency": "EUR"}
BATCH = 100  # messages per publish call / API batch request


def setup_django(env: BenchEnv) -> None:
    """Configure this process like the workers and create the schema."""
    import os

    os.environ.update(env.hookpost_env())
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from webhooks import services
    from webhooks.models import EventType

    if not EventType.objects.filter(name=EVENT_TYPE).exists():
        services.event_type_create(name=EVENT_TYPE)


def clear_history() -> None:
    """Delete messages, deliveries and attempts (only with no Hookpost process running), and
    write the server's dirty pages out now (``CHECKPOINT``), so the next measurement does not
    pay for the last one's writes: after the ingest step, the 1:1 runs that followed were
    about a fifth slower than on a settled database."""
    from django.db import DatabaseError, connection

    from deliveries.models import Message

    with connection.cursor() as cursor:
        cursor.execute(f'TRUNCATE "{Message._meta.db_table}" CASCADE')
        try:
            cursor.execute("CHECKPOINT")
        except DatabaseError as exc:  # needs a superuser or pg_checkpoint; the runs are noisier without
            print(f"  (no CHECKPOINT between steps: {exc})", flush=True)


class Stack:
    """The Hookpost workers, started on a clean broker, as docs/operations.md deploys them:
    ``WORKER_PROCESSES`` for first attempts (the first with the embedded scheduler) and
    one for the retry lane, so failing endpoints' work never waits in line with healthy
    endpoints' first attempts."""

    def __init__(self, env: BenchEnv, name: str) -> None:
        flush_redis(env)
        self.first = [
            _worker(env, f"{name}-first{i}", "deliveries.first,maintenance", beat=i == 0)
            for i in range(WORKER_PROCESSES)
        ]
        self.retry = _worker(env, f"{name}-retry", "deliveries.retry,maintenance", beat=False)
        self.rss_start_kb = 0

    @property
    def processes(self) -> list[Process]:
        return [*self.first, self.retry]

    def rss_kb(self) -> int:
        """Resident memory of all the workers (with their threads' allocations)."""
        return sum(p.rss_kb() for p in self.processes)

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


def _worker(env: BenchEnv, name: str, queues: str, *, beat: bool) -> Process:
    extra = ("-B", "--schedule", str(env.workdir / f"beat-{name}")) if beat else ()
    command = worker_command(sys.executable, "config", queues, name, extra)
    return Process(f"hookpost-worker-{name}", command, env.hookpost_env(), env.workdir / f"worker-{name}.log")


class Web:
    """gunicorn with the production config (2 processes x 4 threads unless overridden)."""

    def __init__(self, env: BenchEnv) -> None:
        self.port = free_port()
        self.process = Process(
            "gunicorn",
            [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py", "config.wsgi"],
            {**env.hookpost_env(), "GUNICORN_BIND": f"127.0.0.1:{self.port}"},
            env.workdir / "gunicorn.log",
        )
        wait_port(self.port, timeout=30)

    def stop(self) -> None:
        self.process.stop()


@dataclass
class Tenant:
    """A benchmark tenant, its endpoints' receiver paths, and an API key.

    With ``event_types``, endpoint i subscribes to ``event_types[i]`` only, and messages
    go to the endpoints in turn, ``run_length`` consecutive messages to each: each message
    goes to one endpoint, spread over all of them (1:1 over n endpoints). Without, every
    endpoint gets every message (fan-out).
    """

    model: Any
    paths: list[str]
    api_key: str = ""
    event_types: list[str] = field(default_factory=list)
    run_length: int = 1

    def _endpoint_of(self, index: int) -> int:
        return index // self.run_length % len(self.paths)

    def event_type(self, index: int) -> str:
        return self.event_types[self._endpoint_of(index)] if self.event_types else EVENT_TYPE

    def messages_for(self, deliveries: int) -> int:
        """How many messages make ``deliveries`` deliveries."""
        return max(1, deliveries if self.event_types else deliveries // len(self.paths))

    def expected(self, accepted: list[tuple[str, float]]) -> list[tuple[str, str]]:
        """The (webhook-id, receiver path) pairs the messages ``accepted``, in publishing order, owe."""
        if self.event_types:
            return [(uid, self.paths[self._endpoint_of(j)]) for j, (uid, _) in enumerate(accepted)]
        return [(uid, path) for uid, _ in accepted for path in self.paths]


def make_tenant(
    uid: str,
    urls: list[str],
    timeout_seconds: int | None = None,
    *,
    one_type_each: bool = False,
    run_length: int = 1,
) -> Tenant:
    """A tenant with an endpoint per URL; ``one_type_each`` gives endpoint i an event type
    of its own, and messages go to them ``run_length`` at a time (``Tenant``)."""
    from urllib.parse import urlsplit

    from webhooks import services
    from webhooks.models import EventType

    tenant = services.tenant_create(uid=uid, name=uid)
    types = [f"{EVENT_TYPE}.{i}" for i in range(len(urls))] if one_type_each else []
    for index, url in enumerate(urls):
        subscribed = None
        if types:
            if not EventType.objects.filter(name=types[index]).exists():
                services.event_type_create(name=types[index])
            subscribed = [types[index]]
        services.endpoint_create(
            tenant=tenant, url=url, timeout_seconds=timeout_seconds, event_types=subscribed
        )
    _, raw = services.api_key_create(tenant=tenant, name="bench")
    paths = [urlsplit(u).path for u in urls]
    return Tenant(model=tenant, paths=paths, api_key=raw, event_types=types, run_length=run_length)


def publish(tenant: Tenant, count: int, *, tag: str) -> list[tuple[str, float]]:
    """Publish ``count`` messages in batches; returns (webhook-id, accepted at) pairs."""
    from deliveries.services import NewMessage, message_publish_batch

    accepted: list[tuple[str, float]] = []
    for start in range(0, count, BATCH):
        batch = [
            NewMessage(event_type=tenant.event_type(i), payload={**PAYLOAD, "i": i, "tag": tag})
            for i in range(start, min(start + BATCH, count))
        ]
        results = message_publish_batch(tenant=tenant.model, batch=batch)
        now = time.time()
        accepted += [(r.message.uid, now) for r in results]
    return accepted


def publish_paced(tenant: Tenant, rate: float, seconds: float, *, tag: str) -> list[tuple[str, float]]:
    """One message at a time at ``rate`` per second (open loop: a late send does not slow the next)."""
    from deliveries.services import NewMessage, message_publish

    accepted: list[tuple[str, float]] = []
    interval = 1.0 / rate
    begin = time.monotonic()
    index = 0
    while time.monotonic() - begin < seconds:
        due = begin + index * interval
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        published = message_publish(
            tenant=tenant.model,
            new=NewMessage(event_type=EVENT_TYPE, payload={**PAYLOAD, "i": index, "tag": tag}),
        )
        accepted.append((published.message.uid, time.time()))
        index += 1
    return accepted


def _latencies_ms(accepted: list[tuple[str, float]], paths: list[str], got: list[Arrival]) -> list[float]:
    """accept -> first arrival of each (message, endpoint) pair, in ms."""
    first: dict[tuple[str, str], float] = {}
    for arrival in got:
        key = (arrival.webhook_id, arrival.path)
        if 200 <= arrival.status < 300 and (key not in first or arrival.at < first[key]):
            first[key] = arrival.at
    at = dict(accepted)
    return [(first[(uid, p)] - at[uid]) * 1000 for uid, _ in accepted for p in paths if (uid, p) in first]


@dataclass
class Observed:
    """One delivery run as the ledger saw it."""

    accepted: list[tuple[str, float]]
    got: list[Arrival]
    result: ledger.LedgerResult
    deliveries_per_s: float  # received / (last wanted arrival - start of publishing)


def _observe(
    nginx: Nginx,
    tenant: Tenant,
    ledgers: ledger.Ledgers,
    name: str,
    run_id: list[int],
    wait: float,
    publish_with: Callable[[str], list[tuple[str, float]]],
) -> Observed:
    """Publish (``publish_with(tag)``), wait for every pair in nginx's log, check the ledger."""
    run_id[0] += 1
    since = nginx.mark()
    start = time.time()
    accepted = publish_with(f"{name}-{run_id[0]}")
    expected = tenant.expected(accepted)
    got = wait_for_arrivals(nginx, since, len(expected), timeout=wait)
    result = ledgers.add(ledger.check(name, expected, got))
    wanted = set(expected)
    last = max((a.at for a in got if (a.webhook_id, a.path) in wanted), default=time.time())
    return Observed(accepted, got, result, result.received / max(last - start, 1e-6))


def throughput_run(
    nginx: Nginx,
    tenant: Tenant,
    deliveries: int,
    ledgers: ledger.Ledgers,
    name: str,
    run_id: list[int],
    wait: float,
    extra: Callable[[Observed], dict[str, float]] | None = None,
) -> Callable[[], dict[str, float]]:
    """Publish as fast as we can; deliveries/s = pairs / (last arrival - start of publishing).
    ``extra`` adds figures of its own from what the run observed."""
    messages = tenant.messages_for(deliveries)

    def run() -> dict[str, float]:
        seen = _observe(
            nginx, tenant, ledgers, name, run_id, wait, lambda tag: publish(tenant, messages, tag=tag)
        )
        return {
            "deliveries_per_s": seen.deliveries_per_s,
            "lost": seen.result.lost,
            "duplicates": seen.result.duplicates,
            **(extra(seen) if extra else {}),
        }

    return run


def single_run(
    nginx: Nginx,
    tenant: Tenant,
    seconds: float,
    ledgers: ledger.Ledgers,
    name: str,
    run_id: list[int],
    wait: float,
) -> Callable[[], dict[str, float]]:
    """One message per publish call, back to back for ``seconds``: the sustainable rate of
    the traffic most services send (each message its own transaction and hand-off)."""

    def run() -> dict[str, float]:
        seen = _observe(
            nginx,
            tenant,
            ledgers,
            name,
            run_id,
            wait,
            lambda tag: publish_paced(tenant, 1e9, seconds, tag=tag),
        )
        return {
            "deliveries_per_s": seen.deliveries_per_s,
            "published_per_s": len(seen.accepted) / seconds,
            "lost": seen.result.lost,
            "duplicates": seen.result.duplicates,
        }

    return run


def latency_run(
    nginx: Nginx,
    tenant: Tenant,
    rate: float,
    seconds: float,
    ledgers: ledger.Ledgers,
    name: str,
    run_id: list[int],
    wait: float,
) -> Callable[[], dict[str, float]]:
    """Paced publishing at ``rate`` messages/s; p50/p99 of accept -> arrival."""

    def run() -> dict[str, float]:
        seen = _observe(
            nginx,
            tenant,
            ledgers,
            name,
            run_id,
            wait,
            lambda tag: publish_paced(tenant, rate, seconds, tag=tag),
        )
        latencies = _latencies_ms(seen.accepted, tenant.paths, seen.got)
        return {
            "p50_ms": percentile(latencies, 50),
            "p99_ms": percentile(latencies, 99),
            "max_ms": max(latencies, default=float("nan")),
            "offered_per_s": len(seen.accepted) * len(tenant.paths) / seconds,
            "deliveries_per_s": seen.deliveries_per_s,
            "lost": seen.result.lost,
        }

    return run


def ingest_run(
    web: Web, tenant: Tenant, *, batch: int, seconds: float, threads: int = 8
) -> Callable[[], dict[str, float]]:
    """POST /messages/ (batch=1) or /messages/batch/ from ``threads`` keep-alive clients for ``seconds``."""
    import json

    base = f"http://127.0.0.1:{web.port}/api/v1/tenants/{tenant.model.uid}/messages/"
    headers = {"authorization": f"Bearer {tenant.api_key}", "content-type": "application/json"}

    def body(seq: int) -> tuple[str, str]:
        if batch == 1:
            return base, json.dumps({"event_type": EVENT_TYPE, "payload": {**PAYLOAD, "i": seq}})
        items = [
            {"event_type": EVENT_TYPE, "payload": {**PAYLOAD, "i": seq * batch + j}} for j in range(batch)
        ]
        return base + "batch/", json.dumps({"messages": items})

    def run() -> dict[str, float]:
        accepted = [0] * threads
        errors = [0] * threads
        stop_at = time.monotonic() + seconds

        def client(index: int) -> None:
            pool = urllib3.PoolManager(maxsize=1)
            seq = index * 1_000_000
            while time.monotonic() < stop_at:
                url, data = body(seq)
                seq += 1
                response = pool.request("POST", url, body=data, headers=headers, retries=False)
                if response.status == 202:
                    accepted[index] += batch
                else:
                    errors[index] += 1

        begin = time.monotonic()
        workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.monotonic() - begin
        return {"messages_per_s": sum(accepted) / elapsed, "errors": float(sum(errors))}

    return run


class BrokenTraffic:
    """A tenant whose ``failing`` endpoints all fail (half refused, half 500) and whose
    ``hanging`` endpoints accept and never answer (until their 15 s timeout), receiving
    one message every ``interval`` seconds.

    The messages are published by a process of their own (``python -m bench.hookpost
    broken``), as another service would publish them: from a thread of this process,
    each publish of a message to a thousand endpoints held the GIL the healthy tenant's
    publishing and the ledger's reading need, and the isolation runs measured that.
    """

    def __init__(
        self,
        env: BenchEnv,
        nginx: Nginx,
        hanging: Hanging,
        failing: int,
        hung: int,
        interval: float,
        uid: str,
    ) -> None:
        urls = [refused_url(f"/refused/{i}") if i % 2 else nginx.url(f"/fail/{i}") for i in range(failing)]
        self.hanging_prefix = hanging.url("/hang/")
        urls += [hanging.url(f"/hang/{i}") for i in range(hung)]
        self.tenant = make_tenant(uid, urls)
        self.env = env
        self.interval = interval
        self.count_file = env.workdir / f"broken-{uid}.count"
        self.process: Process | None = None

    @property
    def sent(self) -> int:
        """Messages published so far (the publisher rewrites the count after each)."""
        try:
            return int(self.count_file.read_text() or 0)
        except (OSError, ValueError):
            return 0

    def start(self) -> BrokenTraffic:
        self.count_file.write_text("0")
        command = [
            sys.executable, "-m", "bench.hookpost", "broken",
            self.tenant.model.uid, str(self.interval), str(self.count_file),
        ]  # fmt: skip
        self.process = Process(
            "broken-publisher", command, self.env.hookpost_env(), self.env.workdir / "broken-publisher.log"
        )
        return self

    def check_alive(self) -> None:
        """Raise if the publisher has died: a "with" run without broken traffic measures nothing."""
        if self.process is None or not self.process.alive():
            tail = self.process.tail() if self.process is not None else "(never started)"
            raise RuntimeError(f"the broken tenant's publisher is not running:\n{tail}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def hanging_attempt_lag(self) -> dict[str, float]:
        """Whether the hanging endpoints' work jammed: for each hanging endpoint, how long its
        first message waited for its first attempt to start (accepted -> started); the worst
        of them, and how many endpoints had no attempt though their first message was
        accepted longer ago than the timeout + 10 s (issue 18: none; later messages may be
        deferred by the endpoint's breaker and cap, which is the protection at work)."""
        from datetime import timedelta

        from django.conf import settings
        from django.db.models import Min
        from django.utils import timezone

        from deliveries.models import Delivery

        timeout = settings.HOOKPOST_DEFAULT_TIMEOUT_SECONDS
        per_endpoint = (
            Delivery.objects.filter(tenant=self.tenant.model, endpoint__url__startswith=self.hanging_prefix)
            .values("endpoint_id")
            .annotate(accepted=Min("message__created_at"), first=Min("attempts__started_at"))
        )
        bound = timezone.now() - timedelta(seconds=timeout + 10)
        lags = [(row["first"] - row["accepted"]).total_seconds() for row in per_endpoint if row["first"]]
        late = sum(1 for row in per_endpoint if row["first"] is None and row["accepted"] < bound)
        return {
            "worst_first_attempt_wait_s": max(lags, default=float("nan")),
            "endpoints_unattempted_past_bound": float(late),
            "endpoints_attempted": float(len(lags)),
        }


def _publish_broken(tenant_uid: str, interval: float, count_file: str) -> None:
    """The broken tenant's publisher process: one message every ``interval`` s until stopped."""
    import django

    django.setup()
    from webhooks.models import Tenant as TenantModel

    tenant = Tenant(model=TenantModel.objects.get(uid=tenant_uid), paths=[])
    stopping = [False]  # set by SIGTERM; a plain flag is all a signal handler may safely touch

    def stop(*_: object) -> None:
        stopping[0] = True

    signal.signal(signal.SIGTERM, stop)
    parent = os.getppid()
    sent = 0
    while not stopping[0] and os.getppid() == parent:  # a harness killed hard leaves no orphan
        publish(tenant, 1, tag="broken")
        sent += 1
        Path(count_file).write_text(str(sent))
        deadline = time.monotonic() + interval
        while not stopping[0] and time.monotonic() < deadline:
            time.sleep(0.05)


if __name__ == "__main__":
    if sys.argv[1:2] == ["broken"]:
        _publish_broken(sys.argv[2], float(sys.argv[3]), sys.argv[4])
