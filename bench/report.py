"""The report: docs/BENCHMARKS.md, docs/benchmarks.json and docs/benchmarks.png.

Figures are absolute (per second, ms) and, because absolute figures depend on
the machine, also ratios of measurements taken in the same run, compared with
the targets of issue 7 and, for receivers that wait, of issue 18.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, cast

from bench import process_groups
from bench.env import BASELINE_CONCURRENCY, WORKER_PROCESSES, BenchEnv
from bench.latency import CONCURRENCY, ENDPOINTS
from bench.receivers import WAIT_DELAYS_MS

# (ratio key, description, comparison, target)
TARGETS: list[tuple[str, str, str, float]] = [
    ("hookpost_over_floor", "Hookpost e2e ÷ floor", ">=", 0.50),
    ("hookpost_over_naive", "Hookpost e2e ÷ naive Celery task", ">=", 5.0),
    ("hookpost_over_djw", "Hookpost e2e ÷ django-webhook", ">=", 10.0),
    ("fanout_over_1to1", "fan-out 1→100 ÷ 1:1", ">=", 1.0),
    ("isolation_p99_ratio", "isolation: healthy p99 with ÷ without failing and hanging", "<=", 1.10),
    ("isolation_throughput_ratio", "isolation: healthy throughput with ÷ without", ">=", 0.95),
    (
        "isolation_hanging_wait_s",
        "isolation: longest wait of a hanging endpoint for its first attempt (s)",
        "<=",
        10.0,
    ),
    ("latency_p99_ms", "latency p99 at half load (ms)", "<=", 50.0),
    ("backlog_rss_growth_pct", "worker memory growth across the pending backlog (%)", "<=", 5.0),
    ("in_flight_requests", "requests in flight in one worker process", ">=", 1000.0),
    ("in_flight_db_connections", "its PostgreSQL connections meanwhile", "<=", 10.0),
    ("in_flight_rss_mb", "its RSS meanwhile (MB)", "<=", 300.0),
]
# Receivers that wait D ms (the latency-D steps), issue 18's targets.
LATENCY_TARGETS: list[tuple[str, str, str, float]] = [
    (
        "latency50_over_reference",
        f"receiver waits 50 ms, {ENDPOINTS} endpoints 1:1: Hookpost ÷ reference sender",
        ">=",
        0.70,
    ),
    (
        "latency200_over_reference",
        f"receiver waits 200 ms, {ENDPOINTS} endpoints 1:1: Hookpost ÷ reference sender",
        ">=",
        0.70,
    ),
    (
        "latency200_backlog_over_cap",
        "receiver waits 200 ms, one backlogged endpoint: Hookpost ÷ (cap ÷ D)",
        ">=",
        0.90,
    ),
]


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_info(env: BenchEnv) -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "os": platform.platform(),
        "hostname": platform.node(),
        "load_before": load_average(),
    }


def versions(env: BenchEnv) -> dict[str, str]:
    import aiohttp
    import celery
    import django
    import urllib3

    from bench.baselines import djw_version
    from bench.receivers import nginx_version

    found = {
        "python": platform.python_version(),
        "django": django.get_version(),
        "celery": celery.__version__,
        "urllib3": urllib3.__version__,  # type: ignore[attr-defined]  # left out of urllib3's __all__
        "aiohttp": aiohttp.__version__,
        "nginx": nginx_version(),
        "django-webhook": djw_version(),
    }
    try:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            found["postgresql"] = str(cursor.fetchone()[0])
        import redis

        server = cast("dict[str, Any]", redis.Redis.from_url(env.redis_url).info("server"))
        found["redis"] = str(server["redis_version"])
    except Exception as exc:  # a version we cannot read must not lose the whole report
        found["error"] = str(exc)
    try:
        found["git"] = process_groups.run(["git", "rev-parse", "--short", "HEAD"], timeout=60).stdout.strip()
        dirty = process_groups.run(
            ["git", "status", "--porcelain", "--", "deliveries", "webhooks", "config"], timeout=60
        ).stdout.strip()
        found["git"] += " (+ uncommitted changes in app code)" if dirty else ""
    except OSError:
        pass
    return found


def settings_info(env: BenchEnv) -> dict[str, Any]:
    from django.conf import settings

    return {
        "database": env.database_name,
        "redis": env.redis_url,
        "workers": f"first lane: {WORKER_PROCESSES} x celery -A config worker --pool threads "
        "(its default 4 threads) -Q deliveries.first,maintenance (the first with -B); "
        "retry lane: 1 x the same with -Q deliveries.retry,maintenance",
        "web": "gunicorn -c config/gunicorn.py (WEB_CONCURRENCY=2, GUNICORN_THREADS=4)",
        "naive/django-webhook workers": (
            f"{WORKER_PROCESSES} x --pool threads --concurrency {BASELINE_CONCURRENCY}"
        ),
        "receiver": "nginx, 1 worker process, return 204, access log per request; "
        "/wait/<D>/: echo_sleep D ms, then 204 (Debian's libnginx-mod-http-echo)",
        "DEBUG": settings.DEBUG,
        "CONN_MAX_AGE": settings.DATABASES["default"]["CONN_MAX_AGE"],
        "HOOKPOST_SCHEDULER_INTERVAL_SECONDS": settings.HOOKPOST_SCHEDULER_INTERVAL_SECONDS,
        "HOOKPOST_QUEUE_TARGET_DEPTH": settings.HOOKPOST_QUEUE_TARGET_DEPTH,
        "HOOKPOST_DEFAULT_TIMEOUT_SECONDS": settings.HOOKPOST_DEFAULT_TIMEOUT_SECONDS,
        "HOOKPOST_RETRY_SCHEDULE": settings.HOOKPOST_RETRY_SCHEDULE,
        "HOOKPOST_ENDPOINT_MAX_IN_FLIGHT": settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT,
    }


def _median(results: dict[str, Any], *path: str) -> float:
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return float("nan")
        node = node[key]
    return float(node)


_RUN_FIGURES = ("deliveries_per_s", "messages_per_s", "p50_ms", "p99_ms")


def _every_run(results: dict[str, Any]) -> list[str]:
    """Each measured run's figures beside the median: on a shared machine the spread is part
    of the result, and a ratio of two medians is only as firm as the runs behind them."""
    measured: list[tuple[str, dict[str, Any]]] = []
    for name, node in results.items():
        if isinstance(node, dict) and node.get("runs"):
            measured.append((name, node))
        elif isinstance(node, dict):  # a scenario of several measurements (isolation)
            measured += [(f"{name} {k}", v) for k, v in node.items() if isinstance(v, dict) and v.get("runs")]
    rows = []
    for name, node in measured:
        for key in _RUN_FIGURES:
            values = [run[key] for run in node["runs"] if key in run]
            if values:
                rows.append(f"| {name} | {key} | {', '.join(_fmt(v) for v in values)} |")
    if not rows:
        return []
    return [
        "",
        "Every run (after warm-up), in order:",
        "",
        "| Run | Figure | Values |",
        "| --- | --- | --- |",
        *rows,
        "",
    ]


def figures(results: dict[str, Any]) -> dict[str, float]:
    """The headline absolute figures (medians)."""
    return {
        "floor_per_s": _median(results, "floor", "median", "deliveries_per_s"),
        "naive_per_s": _median(results, "naive", "median", "deliveries_per_s"),
        "djw_per_s": _median(results, "django_webhook", "median", "deliveries_per_s"),
        "ingest_single_per_s": _median(results, "ingest_single", "median", "messages_per_s"),
        "ingest_batch_per_s": _median(results, "ingest_batch", "median", "messages_per_s"),
        "e2e_per_s": _median(results, "e2e", "median", "deliveries_per_s"),
        "e2e_single_per_s": _median(results, "e2e_single", "median", "deliveries_per_s"),
        "fanout_per_s": _median(results, "fanout", "median", "deliveries_per_s"),
        "latency_rate_per_s": _median(results, "latency", "median", "offered_per_s"),
        "latency_p50_ms": _median(results, "latency", "median", "p50_ms"),
        "latency_p99_ms": _median(results, "latency", "median", "p99_ms"),
        "iso_without_per_s": _median(
            results, "isolation_without", "throughput", "median", "deliveries_per_s"
        ),
        "iso_with_per_s": _median(results, "isolation_with", "throughput", "median", "deliveries_per_s"),
        "iso_without_p99_ms": _median(results, "isolation_without", "latency", "median", "p99_ms"),
        "iso_with_p99_ms": _median(results, "isolation_with", "latency", "median", "p99_ms"),
        "iso_without_p50_ms": _median(results, "isolation_without", "latency", "median", "p50_ms"),
        "iso_with_p50_ms": _median(results, "isolation_with", "latency", "median", "p50_ms"),
        "iso_pairs_throughput_ratio": _pairs_median(results, "throughput_ratio"),
        "iso_pairs_p99_ratio": _pairs_median(results, "p99_ratio"),
        "backlog_pending": _median(results, "backlog", "pending"),
        "backlog_growth_pct": _median(results, "backlog", "growth_pct"),
        "backlog_rss_start_mb": _median(results, "backlog", "rss_start_kb") / 1024,
        "backlog_rss_peak_mb": _median(results, "backlog", "rss_peak_last_third_kb") / 1024,
        "backlog_delivered": _median(results, "backlog", "delivered"),
        "hanging_wait_s": _median(results, "isolation_hanging", "worst_first_attempt_wait_s"),
        "hanging_unattempted": _median(results, "isolation_hanging", "endpoints_unattempted_past_bound"),
        "in_flight_requests": _median(results, "in_flight", "requests_in_flight"),
        "in_flight_db_connections": _median(results, "in_flight", "db_connections"),
        "in_flight_rss_mb": _median(results, "in_flight", "rss_kb") / 1024,
        **_latency_figures(results),
    }


# Per run of the latency-D steps: (figure name suffix, run kind, key of the run's figures).
_LATENCY_RUN_FIGURES = [
    ("reference_per_s", "reference", "deliveries_per_s"),
    ("spread_per_s", "spread", "deliveries_per_s"),
    ("backlog_per_s", "backlogged", "deliveries_per_s"),
    ("reference_cpu", "reference", "cpu_sender"),
    ("spread_cpu", "spread", "cpu_workers"),
    ("backlog_cpu", "backlogged", "cpu_workers"),
    ("reference_max_open", "reference", "max_open"),
    ("spread_max_open", "spread", "max_open"),
    ("backlog_max_open", "backlogged", "max_open"),
    ("backlog_mean_open", "backlogged", "mean_open"),
    ("reference_connections", "reference", "connections"),
    ("spread_connections", "spread", "connections"),
    ("backlog_connections", "backlogged", "connections"),
]


def _latency_figures(results: dict[str, Any]) -> dict[str, float]:
    """The latency-D steps' medians, named ``latency<D>_<figure>``; NaN where a step did not run."""
    found: dict[str, float] = {}
    for delay in WAIT_DELAYS_MS:
        node = f"latency_{delay}"
        found[f"latency{delay}_cap"] = _median(results, node, "cap")
        found[f"latency{delay}_cap_bound_per_s"] = _median(results, node, "cap_bound_per_s")
        for suffix, kind, key in _LATENCY_RUN_FIGURES:
            found[f"latency{delay}_{suffix}"] = _median(results, node, kind, "median", key)
    return found


def ratios(fig: dict[str, float]) -> dict[str, float]:
    def div(a: float, b: float) -> float:
        return a / b if b and not math.isnan(a) and not math.isnan(b) else float("nan")

    return {
        "hookpost_over_floor": div(fig["e2e_per_s"], fig["floor_per_s"]),
        "hookpost_over_naive": div(fig["e2e_per_s"], fig["naive_per_s"]),
        "hookpost_over_djw": div(fig["e2e_per_s"], fig["djw_per_s"]),
        "fanout_over_1to1": div(fig["fanout_per_s"], fig["e2e_per_s"]),
        # The median of the pairs' ratios, each "with" run over its own "without" run.
        "isolation_p99_ratio": fig["iso_pairs_p99_ratio"],
        "isolation_throughput_ratio": fig["iso_pairs_throughput_ratio"],
        "latency_p99_ms": fig["latency_p99_ms"],
        "backlog_rss_growth_pct": fig["backlog_growth_pct"],
        # A hanging endpoint never attempted past its bound counts as an endless wait.
        "isolation_hanging_wait_s": math.inf if fig["hanging_unattempted"] > 0 else fig["hanging_wait_s"],
        "in_flight_requests": fig["in_flight_requests"],
        "in_flight_db_connections": fig["in_flight_db_connections"],
        "in_flight_rss_mb": fig["in_flight_rss_mb"],
        **{
            key: value
            for delay in WAIT_DELAYS_MS
            for key, value in {
                f"latency{delay}_over_reference": div(
                    fig[f"latency{delay}_spread_per_s"], fig[f"latency{delay}_reference_per_s"]
                ),
                f"latency{delay}_backlog_over_cap": div(
                    fig[f"latency{delay}_backlog_per_s"], fig[f"latency{delay}_cap_bound_per_s"]
                ),
            }.items()
        },
    }


def _pairs_median(results: dict[str, Any], key: str) -> float:
    """The median of ``key`` over the isolation step's pairs; NaN when it ran none."""
    values = [pair[key] for pair in results.get("isolation_pairs", []) if key in pair]
    return statistics.median(values) if values else float("nan")


def _pairs(results: dict[str, Any]) -> list[str]:
    """The isolation pairs' ratios, each pair's "with" run over its own "without" run."""
    pairs = results.get("isolation_pairs", [])
    if not pairs:
        return []
    through = ", ".join(_fmt(pair["throughput_ratio"], 2) for pair in pairs)
    p99 = ", ".join(_fmt(pair["p99_ratio"], 2) for pair in pairs)
    return [
        "",
        f"Isolation is measured in {len(pairs)} pair{'' if len(pairs) == 1 else 's'}, each on a "
        "fresh stack (workers, broker, empty history) with a broken tenant of its own: a run "
        "without failing endpoints, then one beside them. Its ratios above are the medians of "
        "the pairs' ratios: throughput "
        f"{through}; p99 {p99}.",
    ]


def _isolation_cpu(results: dict[str, Any]) -> list[str]:
    """Whose CPU the isolation step's runs used, without and with the broken tenant: the
    median over the pairs of each group's busy cores, in the throughput runs (the machine
    saturated) and in the latency runs (paced at half load)."""
    cpu = results.get("isolation_cpu")
    sides = ("without", "with", "without latency", "with latency")
    if not cpu or not all(cpu.get(side) for side in sides):
        return []

    def median(side: str, group: str) -> float:
        middle: float = statistics.median(shares.get(group, 0.0) for shares in cpu[side])
        return middle

    named = {g for side in sides for shares in cpu[side] for g in shares}
    groups = sorted(named, key=lambda g: -median("with", g))
    rows = [f"| {g} | " + " | ".join(f"{median(side, g):.2f}" for side in sides) + " |" for g in groups]
    total = " | ".join(f"{sum(median(side, g) for g in groups):.2f}" for side in sides)
    return [
        "",
        "CPU during the isolation runs, in busy cores (2 is the machine), median of the pairs:",
        "",
        "| Processes | throughput runs, without | with failing endpoints | latency runs, without | with |",
        "| --- | ---: | ---: | ---: | ---: |",
        *rows,
        f"| all | {total} |",
    ]


def verdicts(rat: dict[str, float]) -> dict[str, str]:
    out = {}
    for key, _, op, target in (*TARGETS, *LATENCY_TARGETS):
        value = rat[key]
        if math.isnan(value):
            out[key] = "not measured"
        else:
            out[key] = "met" if (value >= target if op == ">=" else value <= target) else "NOT met"
    return out


def _fmt(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def _target_rows(
    targets: list[tuple[str, str, str, float]], rat: dict[str, float], verdict: dict[str, str]
) -> list[str]:
    return [
        f"| {label} | {_fmt(rat[key], 2)} | {op.replace('>=', '≥').replace('<=', '≤')} {target:g} "
        f"| {verdict[key]} |"
        for key, label, op, target in targets
    ]


def _latency(fig: dict[str, float], rat: dict[str, float], verdict: dict[str, str]) -> list[str]:
    """The latency-D steps: issue 18's ratios, then each figure behind them, a column per D."""

    def row(label: str, *names: str, digits: int = 1, source: dict[str, float] = fig) -> str:
        cells = [" / ".join(_fmt(source[f"latency{d}_{n}"], digits) for n in names) for d in WAIT_DELAYS_MS]
        return f"| {label} | " + " | ".join(cells) + " |"

    caps = sorted({_fmt(fig[f"latency{d}_cap"], 0) for d in WAIT_DELAYS_MS})
    return [
        "",
        "## Receivers that wait D ms, against the targets of issue 18",
        "",
        "| Ratio | Value | Target | Verdict |",
        "| --- | ---: | ---: | --- |",
        *_target_rows(LATENCY_TARGETS, rat, verdict),
        "",
        "| Receiver waits | " + " | ".join(f"{d} ms" for d in WAIT_DELAYS_MS) + " |",
        "| --- |" + " ---: |" * len(WAIT_DELAYS_MS),
        row(f"Reference sender (aiohttp, {CONCURRENCY} in flight), deliveries/s", "reference_per_s"),
        row(f"Hookpost, {ENDPOINTS} endpoints 1:1, deliveries/s", "spread_per_s"),
        row("Hookpost ÷ reference", "over_reference", digits=2, source=rat),
        row("Hookpost, one backlogged endpoint, deliveries/s", "backlog_per_s"),
        row(f"cap ÷ D (cap {', '.join(caps)}), deliveries/s", "cap_bound_per_s"),
        row("backlogged ÷ (cap ÷ D)", "backlog_over_cap", digits=2, source=rat),
        row(
            "CPU, busy cores: reference sender / Hookpost's first-lane workers, "
            f"{ENDPOINTS} endpoints / backlogged",
            "reference_cpu",
            "spread_cpu",
            "backlog_cpu",
            digits=2,
        ),
        row(
            f"Most requests open at the receiver: reference / {ENDPOINTS} endpoints / backlogged",
            "reference_max_open",
            "spread_max_open",
            "backlog_max_open",
            digits=0,
        ),
        row("Mean requests open at the receiver, backlogged", "backlog_mean_open"),
        row(
            f"Connections the receiver saw: reference / {ENDPOINTS} endpoints / backlogged",
            "reference_connections",
            "spread_connections",
            "backlog_connections",
            digits=0,
        ),
    ]


def markdown(
    results: dict[str, Any],
    fig: dict[str, float],
    rat: dict[str, float],
    verdict: dict[str, str],
    plot_name: str,
) -> str:
    machine, ver, led = results["machine"], results["versions"], results["ledger"]
    status = "OK" if led["ok"] and not results["errors"] else "FAILED"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(results["finished_at"]))
    iso = results.get("isolation_with", {})
    lines = [
        "# Benchmarks",
        "",
        f"Run of **{when}**, mode **{results['mode']}**, status **{status}** "
        f"(ledger: {led['totals']['expected']} accepted pairs, {led['totals']['lost']} lost, "
        f"{led['totals']['duplicates']} duplicates), {results['elapsed_s']:.0f} s.",
        "",
        f"Command: `{results['command']}` "
        "(`make bench` runs the full mode, `make bench-quick` the quick one).",
        "",
    ]
    if results.get("note"):
        lines += [f"> **Note:** {results['note']}", ""]
    lines += [
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB, {machine['os']}; "
        f"load average before {machine['load_before']}, after {machine['load_after']}.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in ver.items()) + ".",
        "",
        "## Ratios and bounds (measured in the same run) against the targets of issues 7 and 18",
        "",
        "| Ratio | Value | Target | Verdict |",
        "| --- | ---: | ---: | --- |",
    ]
    lines += _target_rows(TARGETS, rat, verdict)
    lines += [
        *_pairs(results),
        *_isolation_cpu(results),
        *_latency(fig, rat, verdict),
        "",
        "## Absolute figures (medians)",
        "",
        "| Measurement | Figure |",
        "| --- | ---: |",
        f"| Floor: urllib3 POST loop, one keep-alive connection | {_fmt(fig['floor_per_s'])} req/s |",
        f"| Naive: Celery task + `requests.post` per delivery | {_fmt(fig['naive_per_s'])} deliveries/s |",
        f"| django-webhook {ver.get('django-webhook', '')} (model save → its Celery task) "
        f"| {_fmt(fig['djw_per_s'])} deliveries/s |",
        f"| Hookpost ingest, `POST /messages/` (8 clients) | {_fmt(fig['ingest_single_per_s'])} messages/s |",
        f"| Hookpost ingest, `POST /messages/batch/` of 100 (8 clients) "
        f"| {_fmt(fig['ingest_batch_per_s'])} messages/s |",
        f"| Hookpost end-to-end 1:1 (accept → received) | {_fmt(fig['e2e_per_s'])} deliveries/s |",
        "| Hookpost end-to-end 1:1, one message per publish call "
        f"| {_fmt(fig['e2e_single_per_s'])} deliveries/s |",
        f"| Hookpost end-to-end fan-out 1→100 | {_fmt(fig['fanout_per_s'])} deliveries/s |",
        f"| Latency accept → received at {_fmt(fig['latency_rate_per_s'])} msg/s "
        "(half the single-publish rate): p50 / p99 "
        f"| {_fmt(fig['latency_p50_ms'])} / {_fmt(fig['latency_p99_ms'])} ms |",
        f"| Isolation, healthy throughput without / with "
        f"{iso.get('failing_endpoints', 'n/a')} failing and "
        f"{iso.get('hanging_endpoints', 'n/a')} hanging endpoints "
        f"| {_fmt(fig['iso_without_per_s'])} / {_fmt(fig['iso_with_per_s'])} deliveries/s |",
        f"| Isolation, healthy latency p50 / p99 without | {_fmt(fig['iso_without_p50_ms'])} / "
        f"{_fmt(fig['iso_without_p99_ms'])} ms |",
        f"| Isolation, healthy latency p50 / p99 with failing endpoints | {_fmt(fig['iso_with_p50_ms'])} / "
        f"{_fmt(fig['iso_with_p99_ms'])} ms |",
        f"| Worker RSS with {_fmt(fig['backlog_pending'], 0)} deliveries pending: after warm-up / peak of "
        f"the last third ({_fmt(fig['backlog_delivered'], 0)} delivered meanwhile) "
        f"| {_fmt(fig['backlog_rss_start_mb'])} / {_fmt(fig['backlog_rss_peak_mb'])} MB |",
        "| One worker process delivering to receivers that never answer: requests in flight / "
        f"PostgreSQL connections / RSS | {_fmt(fig['in_flight_requests'], 0)} / "
        f"{_fmt(fig['in_flight_db_connections'], 0)} / {_fmt(fig['in_flight_rss_mb'], 0)} MB |",
        "",
        *_every_run(results),
        f"![throughput and latency]({plot_name})",
        "",
    ]
    if "worker_rss_kb" in results:
        rss = results["worker_rss_kb"]
        lines += [
            f"Worker RSS (process + children) after the 1:1 runs / at the end of the delivery runs: "
            f"{rss['start'] / 1024:.0f} / {rss['end'] / 1024:.0f} MB.",
            "",
        ]
    if results.get("profile"):
        lines += [
            "## Profile of the workers during the 1:1 runs (py-spy, `--profile`)",
            "",
            "The first-lane worker processes during the measured runs (the warm-up run, with the",
            "workers' start-up imports, is left out), sampled only in the thread that holds the GIL",
            "(where the process spends its CPU; `py-spy --gil`). Share of those samples with the",
            "function on the stack; a function's share includes what it calls.",
            "",
            "| Share | Function |",
            "| ---: | --- |",
        ]
        lines += [f"| {pct:.1f} % | `{name}` |" for pct, name in results["profile"]["top"]]
        lines.append("")
    if results.get("isolation_profile"):
        lines += [
            "## Profile of the workers beside the broken tenant (py-spy, `--profile`)",
            "",
            "The first isolation pair with failing and hanging endpoints, sampled the same way: the",
            "first-lane workers during its throughput run, the retry worker during its latency run",
            "(when the first lane leaves it most of the machine): what the broken tenant's work costs.",
            "",
        ]
        for lane, title in (("first", "First-lane workers"), ("retry", "Retry worker")):
            top = results["isolation_profile"][lane]
            if not top:
                lines += [f"{title}: py-spy wrote no samples.", ""]
                continue
            lines += [f"{title}:", "", "| Share | Function |", "| ---: | --- |"]
            lines += [f"| {pct:.1f} % | `{name}` |" for pct, name in top]
            lines.append("")
    if results["errors"] or results.get("skipped"):
        lines += ["## Errors and skipped measurements", ""]
        lines += [f"- {name}: `{err}`" for name, err in results["errors"].items()]
        lines += [f"- skipped: {name}" for name in results.get("skipped", [])]
        lines.append("")
    lines += [
        "## What each figure is",
        "",
        "- Every rate is deliveries ÷ (last arrival in nginx's access log - start of sending), so queueing,",
        "  scheduling and database time count. Each is the median of "
        f"{results['sizes']['repeats']} run(s) after {results['sizes']['warmup']} warm-up run(s).",
        "- Floor: one thread, urllib3 (a blocking client; Hookpost sends with aiohttp), keep-alive,",
        "  no database,",
        "  no queue. Naive and django-webhook run the threads pool (x "
        f"{BASELINE_CONCURRENCY}, a thread per request) in as many processes ({WORKER_PROCESSES}) as "
        "Hookpost's first lane,",
        "  on the same Redis.",
        "- Hookpost's delivery scenarios publish through `deliveries.services` in the benchmark process",
        "  (the API's own transaction and after-commit hand-off) in batches of 100; the API is timed",
        "  separately by the ingest rows (gunicorn, production config, worker stopped).",
        "- 1:1 (the ratio rows) publishes in batches of 100 messages; the single-publish row sends one",
        "  message per call, back to back, for the latency window: that is the sustainable rate of the",
        "  traffic the latency and isolation runs send.",
        "- Latency: one message at a time, paced at half the single-publish rate; accept = the commit of",
        "  the publishing transaction; received = nginx's `$msec` (1 ms resolution).",
        "- Isolation: a healthy tenant with "
        f"{results['sizes']['healthy_endpoints']} endpoints, measured without and then with a tenant",
        f"  of {results['sizes']['failing_endpoints']} failing endpoints (half refused, half 500) and",
        f"  {results['sizes'].get('hanging_endpoints', 'n/a')} endpoints that accept and never answer (until "
        "the 15 s timeout), receiving a message every "
        f"{results['sizes']['broken_interval']:g} s,",
        f"  starting {results['sizes']['broken_warmup_seconds']:g} s before the measurement. A hanging",
        "  endpoint's wait is its first message's (accepted -> its first attempt started); one never",
        "  attempted though accepted longer ago than the timeout + 10 s counts as an endless wait.",
        "- In flight: one worker process (threads pool, defaults), "
        f"{results['sizes'].get('in_flight_endpoints', 'n/a')} endpoints proven and capped at",
        "  10, 12 messages each, to a receiver that accepts and never answers; the fullest sample of",
        "  its TCP connections to it, its `pg_stat_activity` rows and its RSS.",
        "- Backlog: that many pending deliveries (messages x "
        f"{results['sizes'].get('backlog_endpoints', 'n/a')} endpoints) written straight into PostgreSQL,",
        "  then the worker starts; its RSS is sampled every 2 s for "
        f"{results['sizes'].get('backlog_seconds', 'n/a')} s after a "
        f"{results['sizes'].get('backlog_warmup_seconds', 'n/a')} s warm-up. Growth = peak of the last",
        "  third ÷ first sample. The backlog is not drained; what arrived is checked for duplicates.",
        *_latency_method(results),
        "- Ledger: every accepted (message, endpoint) pair must appear in nginx's log with a 2xx; a pair",
        "  not received within the run's deadline counts as lost and fails the run.",
        "",
        "Raw data: [benchmarks.json](benchmarks.json).",
        "",
    ]
    return "\n".join(lines)


def _latency_method(results: dict[str, Any]) -> list[str]:
    sizes = results["sizes"]
    ran = [results[f"latency_{d}"] for d in WAIT_DELAYS_MS if f"latency_{d}" in results]
    counts = "; ".join(
        f"at {node['delay_ms']} ms, {node['deliveries']['spread']:,} and {node['deliveries']['backlogged']:,}"
        for node in ran
    )
    return [
        "- Receivers that wait (steps latency-50 and latency-200): nginx answers 204 after D ms",
        "  (Debian's echo module, `echo_sleep`: a timer in its event loop, keep-alive kept). The",
        f"  reference sender is aiohttp in a process of its own, {CONCURRENCY} requests in flight over",
        "  keep-alive connections, the body and signature headers Hookpost sends, to the",
        f"  {ENDPOINTS} endpoints' paths in turn; its CPU is its own over its sending time. Hookpost's",
        f"  {ENDPOINTS} endpoints each subscribe to an event type of their own, so each message goes to",
        "  one of them (1:1), a run's messages in equal shares, each share consecutive (interleaved, a",
        "  publish call names 100 event types and ingest, looking up each one's endpoints, sets the rate);",
        "  the backlogged endpoint gets all of a run's messages. Both are published at once, in batches.",
        "  The bound of one endpoint is its cap of requests in flight (its `max_in_flight`, or",
        "  `HOOKPOST_ENDPOINT_MAX_IN_FLIGHT`) ÷ D. The runs alternate (reference, 100 endpoints,",
        "  backlogged) on the stack the 1:1 runs use, after a warm-up run. A run is the work of "
        f"{sizes.get('wait_spread_seconds', 'n/a')} s",
        f"  at {CONCURRENCY} ÷ D for the {ENDPOINTS} endpoints, and of "
        f"{sizes.get('wait_backlog_seconds', 'n/a')} s at cap ÷ D for the backlogged one"
        + (f" ({counts} deliveries)." if counts else "."),
        "  Requests open at the receiver come from nginx's log: each was open from `$msec - $request_time`",
        "  to `$msec`; connections are the distinct `$connection` serials the run's requests came on.",
    ]


def plot(fig: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display here
    import matplotlib.pyplot as plt

    left_labels = [
        "floor",
        "naive",
        "django-\nwebhook",
        "Hookpost\n1:1",
        "Hookpost\nfan-out",
        "iso.\nwithout",
        "iso.\nwith",
    ]
    left = [
        fig["floor_per_s"],
        fig["naive_per_s"],
        fig["djw_per_s"],
        fig["e2e_per_s"],
        fig["fanout_per_s"],
        fig["iso_without_per_s"],
        fig["iso_with_per_s"],
    ]
    right_labels = ["half load", "iso. without", "iso. with"]
    p50 = [fig["latency_p50_ms"], fig["iso_without_p50_ms"], fig["iso_with_p50_ms"]]
    p99 = [fig["latency_p99_ms"], fig["iso_without_p99_ms"], fig["iso_with_p99_ms"]]
    figure, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(17, 4.5))
    clean = [0 if math.isnan(v) else v for v in left]
    ax1.bar(left_labels, clean, color=["#999"] * 3 + ["#2a6"] * 2 + ["#27c"] * 2)
    ax1.set_yscale("log")
    ax1.set_ylabel("deliveries / s (log)")
    ax1.set_title("Throughput")
    for x, value in enumerate(clean):
        ax1.annotate(f"{value:.0f}", (x, value or 1), ha="center", va="bottom", fontsize=8)
    xs = range(len(right_labels))
    ax2.bar([x - 0.2 for x in xs], [0 if math.isnan(v) else v for v in p50], width=0.4, label="p50")
    ax2.bar([x + 0.2 for x in xs], [0 if math.isnan(v) else v for v in p99], width=0.4, label="p99")
    ax2.axhline(50, color="red", linestyle="--", linewidth=1, label="p99 aim 50 ms")
    ax2.set_xticks(list(xs), right_labels)
    ax2.set_ylabel("ms, accept → received")
    ax2.set_title("Latency")
    ax2.legend()
    _plot_latency(ax3, fig)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _plot_latency(ax: Any, fig: dict[str, float]) -> None:
    """Deliveries/s per receiver delay: the reference, Hookpost's two shapes, one endpoint's bound."""
    kinds = [
        ("reference_per_s", "reference sender", "#999"),
        ("spread_per_s", f"Hookpost, {ENDPOINTS} endpoints", "#2a6"),
        ("backlog_per_s", "Hookpost, 1 backlogged", "#27c"),
        ("cap_bound_per_s", "cap ÷ D", "#c72"),
    ]
    width = 0.8 / len(kinds)
    for index, (suffix, label, color) in enumerate(kinds):
        values = [fig[f"latency{d}_{suffix}"] for d in WAIT_DELAYS_MS]
        xs = [x + (index - (len(kinds) - 1) / 2) * width for x in range(len(WAIT_DELAYS_MS))]
        ax.bar(xs, [0 if math.isnan(v) else v for v in values], width=width, label=label, color=color)
    ax.set_xticks(list(range(len(WAIT_DELAYS_MS))), [f"receiver waits {d} ms" for d in WAIT_DELAYS_MS])
    ax.set_yscale("log")
    ax.set_ylabel("deliveries / s (log)")
    ax.set_title("Receivers that wait")
    ax.legend(fontsize=8)


def write(results: dict[str, Any], out: Path) -> list[Path]:
    """Write the three files into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    results["finished_at"] = time.time()
    fig = figures(results)
    rat = ratios(fig)
    verdict = verdicts(rat)
    results["figures"], results["ratios"], results["verdicts"] = fig, rat, verdict
    json_path, md_path, png_path = out / "benchmarks.json", out / "BENCHMARKS.md", out / "benchmarks.png"
    json_path.write_text(json.dumps(results, indent=2, default=str, allow_nan=True) + "\n")
    plot(fig, png_path)
    md_path.write_text(markdown(results, fig, rat, verdict, png_path.name))
    return [md_path, json_path, png_path]
