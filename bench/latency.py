"""The latency-D steps: Hookpost beside a reference sender, on a receiver that waits D ms.

Real receivers take 50-500 ms to answer; a sender that holds a thread per request
in flight is capped at threads ÷ D whatever the machine could do, and a receiver
that answers at once hides that. Each step runs on nginx's ``/wait/<D>/`` receiver
(bench/receivers.py) with the stack the delivery step uses, and measures:

- the reference sender (bench/reference.py): aiohttp, ``CONCURRENCY`` keep-alive
  requests in flight, the same signed body, to the ``ENDPOINTS`` receiver paths in
  turn: the floor the ratio is measured against;
- Hookpost, ``ENDPOINTS`` endpoints 1:1: each message goes to one of them, a run's
  messages in equal shares, each endpoint's share consecutive. (Interleaved message by
  message, a publish call of 100 messages names 100 event types, and ingest looks up
  the endpoints of each: publishing, not delivery, set the rate, about 50 messages/s.)
- Hookpost, one backlogged endpoint (all its messages published at once), whose
  bound is its cap of requests in flight ÷ D.

The three alternate, run by run, so a loaded machine's drift lands on all alike.
Every rate is the delivery step's: received ÷ (last arrival - start of sending).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Mapping
from typing import Any

from bench import hookpost, ledger, process_groups
from bench.cpu import CpuMeter
from bench.env import ROOT
from bench.receivers import Arrival, Nginx, max_open, wait_for_arrivals
from bench.stats import Measured

ENDPOINTS = 100
CONCURRENCY = 200

Run = Callable[[], dict[str, float]]


def cap_bound_per_s(cap: int, delay_ms: int) -> float:
    """The most one endpoint takes when ``cap`` requests, each ``delay_ms`` long, are in flight."""
    return cap * 1000 / delay_ms


def run_sizes(delay_ms: int, cap: int, *, spread_seconds: float, backlog_seconds: float) -> tuple[int, int]:
    """Deliveries of a 100-endpoint run and of a backlogged run: the work of ``spread_seconds``
    at the reference's bound (``CONCURRENCY`` ÷ D) and of ``backlog_seconds`` at cap ÷ D, so
    each run lasts about as long whatever D is."""
    spread = round(CONCURRENCY * 1000 / delay_ms * spread_seconds)
    backlog = round(cap_bound_per_s(cap, delay_ms) * backlog_seconds)
    return max(ENDPOINTS, spread), max(cap, backlog)


def receiver_figures(arrivals: list[Arrival]) -> dict[str, float]:
    """What the receiver saw of a run: the most requests open at once, the mean open
    (request-seconds ÷ the span from first start to last end), the connections used."""
    if not arrivals:
        return {"max_open": 0.0, "mean_open": 0.0, "connections": 0.0}
    span = max(a.at for a in arrivals) - min(a.at - a.seconds for a in arrivals)
    return {
        "max_open": float(max_open(arrivals)),
        "mean_open": sum(a.seconds for a in arrivals) / max(span, 1e-3),
        "connections": float(len({a.connection for a in arrivals})),
    }


def _cpu(shares: Mapping[str, float]) -> dict[str, float]:
    return {
        "cpu_workers": shares.get("first-lane workers", 0.0),
        "cpu_postgres": shares.get("postgres", 0.0),
        "cpu_nginx": shares.get("nginx", 0.0),
        "cpu_all": sum(shares.values()),
    }


def reference_run(
    nginx: Nginx, paths: list[str], count: int, ledgers: ledger.Ledgers, name: str, run_id: list[int]
) -> Run:
    """One run of bench/reference.py in its own process, checked by the ledger."""
    from webhooks import signing

    secret = signing.generate_secret()

    def run() -> dict[str, float]:
        run_id[0] += 1
        prefix = f"ref-{run_id[0]}"
        spec = {
            "urls": [nginx.url(p) for p in paths],
            "count": count,
            "concurrency": CONCURRENCY,
            "prefix": prefix,
            "event_type": hookpost.EVENT_TYPE,
            "payload": hookpost.PAYLOAD,
            "secret": secret,
        }
        since = nginx.mark()
        out = process_groups.run(
            [sys.executable, "-m", "bench.reference"],
            input=json.dumps(spec),
            cwd=ROOT,
            timeout=max(120, count / 20),
        )
        if out.returncode != 0:
            raise RuntimeError(f"the reference sender failed: {out.stderr[-2000:]}")
        sent = json.loads(out.stdout.strip().splitlines()[-1])
        expected = [(f"{prefix}-{i}", paths[i % len(paths)]) for i in range(count)]
        got = wait_for_arrivals(nginx, since, count, timeout=30)
        result = ledgers.add(ledger.check(name, expected, got))
        wanted = set(expected)
        mine = [a for a in got if (a.webhook_id, a.path) in wanted]
        last = max((a.at for a in mine), default=sent["end"])
        seconds = max(sent["end"] - sent["start"], 1e-6)
        return {
            "deliveries_per_s": result.received / max(last - sent["start"], 1e-6),
            "cpu_sender": sent["cpu_s"] / seconds,
            "failed": float(sent["failed"]),
            "lost": result.lost,
            "duplicates": result.duplicates,
            **receiver_figures(mine),
        }

    return run


def _hookpost_run(
    nginx: Nginx,
    stack: hookpost.Stack,
    tenant: hookpost.Tenant,
    deliveries: int,
    ledgers: ledger.Ledgers,
    name: str,
    run_id: list[int],
    wait: float,
) -> Run:
    """``hookpost.throughput_run``, with the receiver's figures and whose CPU the run used."""

    def seen_at_receiver(seen: hookpost.Observed) -> dict[str, float]:
        ids = {uid for uid, _ in seen.accepted}
        return receiver_figures([a for a in seen.got if a.webhook_id in ids])

    inner = hookpost.throughput_run(nginx, tenant, deliveries, ledgers, name, run_id, wait, seen_at_receiver)
    groups = {"first-lane workers": stack.first, "retry worker": [stack.retry]}

    def run() -> dict[str, float]:
        with CpuMeter(groups) as meter:
            figures = inner()
        return {**figures, **_cpu(meter.shares)}

    return run


def endpoint_cap(tenant: hookpost.Tenant) -> int:
    """The backlogged endpoint's cap of requests in flight: its own, or the setting's."""
    from django.conf import settings

    from webhooks.models import Endpoint

    endpoint = Endpoint.objects.get(tenant=tenant.model)
    return int(getattr(endpoint, "max_in_flight", None) or settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT)


def measure(
    nginx: Nginx,
    stack: hookpost.Stack,
    delay_ms: int,
    *,
    spread_seconds: float,
    backlog_seconds: float,
    warmup: int,
    repeats: int,
    ledgers: ledger.Ledgers,
    run_id: list[int],
    wait: float,
) -> dict[str, Any]:
    """The step's runs at ``delay_ms``, alternating; its figures as the report reads them."""
    backlogged = hookpost.make_tenant(f"bench-wait{delay_ms}-backlog", [nginx.wait_url(delay_ms, "/backlog")])
    cap = endpoint_cap(backlogged)
    n_spread, n_backlog = run_sizes(
        delay_ms, cap, spread_seconds=spread_seconds, backlog_seconds=backlog_seconds
    )
    spread = hookpost.make_tenant(
        f"bench-wait{delay_ms}-spread",
        [nginx.wait_url(delay_ms, f"/spread/{i}") for i in range(ENDPOINTS)],
        one_type_each=True,
        run_length=n_spread // ENDPOINTS,
    )
    label = f"{delay_ms} ms"
    runs = {
        "reference": reference_run(nginx, spread.paths, n_spread, ledgers, f"reference {label}", run_id),
        "spread": _hookpost_run(
            nginx, stack, spread, n_spread, ledgers, f"{ENDPOINTS} endpoints {label}", run_id, wait
        ),
        "backlogged": _hookpost_run(
            nginx, stack, backlogged, n_backlog, ledgers, f"backlogged {label}", run_id, wait
        ),
    }
    # The warm-up warms the stack's pools and imports, as the delivery step's does, and gives
    # every endpoint a success: ingest sends a never-successful endpoint's work to the retry lane.
    n_warm = max(ENDPOINTS, n_spread // 5)
    warm_spread = dataclasses.replace(spread, run_length=n_warm // ENDPOINTS)
    warm = [
        _hookpost_run(nginx, stack, warm_spread, n_warm, ledgers, f"warm-up {label}", run_id, wait),
        _hookpost_run(nginx, stack, backlogged, cap, ledgers, f"warm-up {label}", run_id, wait),
    ]
    for _ in range(warmup):
        for run in warm:
            run()
    measured = {name: Measured() for name in runs}
    for index in range(repeats):
        for name, run in runs.items():
            figures = run()
            measured[name].runs.append(figures)
            print(
                f"  latency {label} {name} run {index + 1}/{repeats}: "
                f"{figures['deliveries_per_s']:.1f} deliveries/s, max open {figures['max_open']:.0f}, "
                f"lost {figures['lost']:.0f}",
                flush=True,
            )
    return {
        "delay_ms": delay_ms,
        "cap": cap,
        "cap_bound_per_s": cap_bound_per_s(cap, delay_ms),
        "endpoints": ENDPOINTS,
        "concurrency": CONCURRENCY,
        "deliveries": {"spread": n_spread, "backlogged": n_backlog},
        "spread_run_length": spread.run_length,
        **{name: m.as_dict() for name, m in measured.items()},
    }
