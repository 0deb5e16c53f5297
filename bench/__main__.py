"""``python -m bench [--quick|--smoke]``: the whole benchmark in one run.

Order (each step on a clean broker, only the processes it needs running):
floor -> naive -> django-webhook -> Hookpost ingest (API) -> Hookpost
end-to-end 1:1, fan-out 1->100, latency at half load -> receivers that wait
50 and 200 ms (Hookpost beside a reference aiohttp sender) -> isolation, in pairs
of a run without and a run with failing and hanging endpoints -> requests in
flight in one worker process -> the backlog's memory. Then docs/BENCHMARKS.md,
docs/benchmarks.json and docs/benchmarks.png (or ``--out DIR``). Exit status
1 when the ledger found a loss (the run is FAILED) or a measurement could not
run.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench import baselines, latency, ledger, process_groups, report
from bench import profile as bench_profile
from bench.cpu import CpuMeter
from bench.env import ROOT, BenchEnv, Process, make_env, reset_database
from bench.receivers import Hanging, Nginx
from bench.stats import Measured, median_of


@dataclass(frozen=True)
class Sizes:
    """How much each measurement sends; full mode fits in 20 minutes, quick in 3."""

    warmup: int
    repeats: int
    floor: int
    naive: int
    djw: int
    ingest_seconds: float
    e2e: int
    fanout: int
    latency_seconds: float
    healthy_endpoints: int
    isolation_deliveries: int
    isolation_latency_seconds: float
    isolation_pairs: int
    failing_endpoints: int
    hanging_endpoints: int
    in_flight_endpoints: int
    broken_interval: float
    broken_warmup_seconds: float
    backlog_pending: int
    backlog_endpoints: int
    backlog_warmup_seconds: float
    backlog_seconds: float
    # The latency-D steps' runs, in seconds of work at their bound: 200 requests in
    # flight ÷ D for the 100 endpoints (the reference sender's), the endpoint's cap ÷ D
    # for the backlogged one (bench/latency.py). An engine short of the bound takes longer.
    wait_spread_seconds: float
    wait_backlog_seconds: float


MODES = {
    "full": Sizes(
        warmup=1,
        repeats=3,
        floor=5000,
        naive=2000,
        djw=1000,
        ingest_seconds=10,
        e2e=5000,
        fanout=10000,
        latency_seconds=20,
        healthy_endpoints=10,
        # Isolation compares two medians, so each run must be steadier than the effect it
        # looks for: at 1,000 deliveries (about a second, beside a broken tenant publishing
        # every 2 s) and 15 s of latency samples (a p99 of 7 samples) the "without" runs
        # alone spread 778-1,063/s and 98-250 ms.
        isolation_deliveries=10000,
        isolation_latency_seconds=30,
        # One pair's ratio moves by about 0.08 from pair to pair (docs/BENCHMARKS.md lists
        # them); five is what the 20 minutes allow.
        isolation_pairs=5,
        failing_endpoints=1000,
        hanging_endpoints=1000,
        in_flight_endpoints=100,
        broken_interval=2.0,
        broken_warmup_seconds=20,
        backlog_pending=1_000_000,
        backlog_endpoints=1000,
        backlog_warmup_seconds=20,
        backlog_seconds=120,
        wait_spread_seconds=1.5,
        wait_backlog_seconds=15,
    ),
    "quick": Sizes(
        warmup=1,
        repeats=1,
        floor=1000,
        naive=500,
        djw=300,
        ingest_seconds=3,
        e2e=1000,
        fanout=2000,
        latency_seconds=4,
        healthy_endpoints=5,
        isolation_deliveries=500,
        isolation_latency_seconds=4,
        isolation_pairs=1,
        failing_endpoints=60,
        hanging_endpoints=60,
        in_flight_endpoints=50,
        broken_interval=1.0,
        broken_warmup_seconds=3,
        backlog_pending=50_000,
        backlog_endpoints=100,
        backlog_warmup_seconds=6,
        backlog_seconds=15,
        wait_spread_seconds=0.5,
        wait_backlog_seconds=3,
    ),
    "smoke": Sizes(
        warmup=1,
        repeats=1,
        floor=100,
        naive=50,
        djw=50,
        ingest_seconds=1,
        e2e=200,
        fanout=100,
        latency_seconds=3,
        healthy_endpoints=2,
        isolation_deliveries=60,
        isolation_latency_seconds=3,
        isolation_pairs=1,
        failing_endpoints=9,
        hanging_endpoints=9,
        in_flight_endpoints=5,
        broken_interval=1.0,
        broken_warmup_seconds=2,
        backlog_pending=2000,
        backlog_endpoints=10,
        backlog_warmup_seconds=2,
        backlog_seconds=6,
        wait_spread_seconds=0.05,
        wait_backlog_seconds=0.5,
    ),
}


# The steps in the order they run (``--only`` picks some).
STEPS = (
    "floor",
    "naive",
    "django-webhook",
    "ingest",
    "delivery",
    "latency-50",
    "latency-200",
    "isolation",
    "in-flight",
    "backlog",
)


def _steps(value: str) -> frozenset[str]:
    names = frozenset(name.strip() for name in value.split(",") if name.strip())
    unknown = names - set(STEPS)
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown step(s) {sorted(unknown)}; choose from {', '.join(STEPS)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small sizes, one run each (< 3 minutes)")
    mode.add_argument("--smoke", action="store_true", help="the smallest sizes (the test suite's smoke test)")
    parser.add_argument("--out", type=Path, help="where the report files go (default docs/)")
    parser.add_argument("--database-url", help="default $BENCH_DATABASE_URL or hookpost_bench")
    parser.add_argument("--redis-url", help="default $BENCH_REDIS_URL or redis://127.0.0.1:6379/12")
    parser.add_argument("--workdir", type=Path, help="logs and nginx files (default var/bench/run)")
    parser.add_argument("--skip-djw", action="store_true", help="skip the django-webhook baseline")
    parser.add_argument("--note", default="", help="a line for the report (e.g. 'loaded machine')")
    parser.add_argument(
        "--profile", action="store_true", help="sample the worker with py-spy during the 1:1 runs"
    )
    parser.add_argument(
        "--only",
        type=_steps,
        help=f"run only these steps, comma-separated, of: {', '.join(STEPS)} (the isolation step's "
        "latency runs offer half the delivery step's single-publish rate, or 10 deliveries/s without "
        "it); the report goes to the work directory unless --out says otherwise",
    )
    parser.add_argument(
        "--isolation-pairs", type=int, help="how many isolation pairs to run (default: the mode's)"
    )
    args = parser.parse_args(argv)
    djw_runs = not args.skip_djw and (args.only is None or "django-webhook" in args.only)
    if djw_runs and baselines.djw_python() is None:
        parser.error(baselines.DJW_MISSING)
    mode_name = "smoke" if args.smoke else "quick" if args.quick else "full"
    sizes = MODES[mode_name]
    if args.isolation_pairs:
        sizes = replace(sizes, isolation_pairs=args.isolation_pairs)
    env = make_env(args.database_url, args.redis_url, args.workdir)
    shutil.rmtree(env.workdir, ignore_errors=True)
    env.workdir.mkdir(parents=True)
    command = "python -m bench " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )

    began = time.time()
    results: dict[str, Any] = {"mode": mode_name, "sizes": asdict(sizes), "errors": {}}
    ledgers = ledger.Ledgers()
    machine_before = report.machine_info(env)
    print(f"bench {mode_name}: database {env.database_name}, redis {env.redis_url}", flush=True)
    reset_database(env)
    from bench import hookpost

    hookpost.setup_django(env)
    nginx = Nginx(env.workdir / "nginx").start()
    hanging = Hanging(env.workdir)
    try:
        _run_all(
            env,
            sizes,
            nginx,
            hanging,
            ledgers,
            results,
            skip_djw=args.skip_djw,
            profile=args.profile,
            only=args.only,
        )
    finally:
        hanging.stop()
        nginx.stop()
    results["elapsed_s"] = time.time() - began
    results["ledger"] = {
        "ok": ledgers.ok,
        "totals": ledgers.totals(),
        "runs": [r.as_dict() for r in ledgers.results],
    }
    results["machine"] = {**machine_before, "load_after": report.load_average()}
    results["versions"] = report.versions(env)
    results["settings"] = report.settings_info(env)
    results["command"] = command
    results["note"] = args.note
    paths = report.write(results, args.out or (env.workdir / "report" if args.only else ROOT / "docs"))
    status = "FAILED (losses)" if not ledgers.ok else "FAILED (errors)" if results["errors"] else "OK"
    print(f"bench {mode_name} {status} in {results['elapsed_s']:.0f} s; wrote {', '.join(map(str, paths))}")
    return 0 if status == "OK" else 1


def _step(results: dict[str, Any], name: str, fn: Any) -> None:
    """Run one measurement; a crash is recorded (and fails the run) but the others still run."""
    print(f"== {name}", flush=True)
    try:
        fn()
    except Exception as exc:
        traceback.print_exc()
        results["errors"][name] = f"{type(exc).__name__}: {exc}"


def _run_all(
    env: BenchEnv,
    sizes: Sizes,
    nginx: Nginx,
    hanging: Hanging,
    ledgers: ledger.Ledgers,
    results: dict[str, Any],
    *,
    skip_djw: bool,
    profile: bool = False,
    only: frozenset[str] | None = None,
) -> None:
    from bench import hookpost
    from bench.env import flush_redis

    run_id = [0]
    reps = {"warmup": sizes.warmup, "repeats": sizes.repeats}

    def floor() -> None:
        results["floor"] = median_of(
            baselines.floor_run(nginx, sizes.floor, ledgers, run_id), label="floor", **reps
        ).as_dict()

    def naive() -> None:
        flush_redis(env)
        worker = baselines.NaiveWorker(env)
        try:
            results["naive"] = median_of(
                baselines.naive_run(env, nginx, sizes.naive, ledgers, run_id), label="naive", **reps
            ).as_dict()
        finally:
            worker.stop()

    def djw() -> None:
        flush_redis(env)
        baseline = baselines.DjwBaseline(env, nginx)
        try:
            results["django_webhook"] = median_of(
                baseline.runner(sizes.djw, ledgers, run_id), label="django-webhook", **reps
            ).as_dict()
        finally:
            baseline.stop()

    def ingest() -> None:
        flush_redis(env)
        tenant = hookpost.make_tenant("bench-ingest", [nginx.url("/ok/ingest")])
        web = hookpost.Web(env)
        try:
            results["ingest_single"] = median_of(
                hookpost.ingest_run(web, tenant, batch=1, seconds=sizes.ingest_seconds),
                label="ingest single",
                **reps,
            ).as_dict()
            results["ingest_batch"] = median_of(
                hookpost.ingest_run(web, tenant, batch=hookpost.BATCH, seconds=sizes.ingest_seconds),
                label="ingest batch",
                **reps,
            ).as_dict()
        finally:
            web.stop()
            # Nothing of the ingest run may be delivered during later measurements.
            hookpost.clear_history()
            flush_redis(env)

    def delivery() -> None:
        hookpost.clear_history()
        stack = hookpost.Stack(env, "main")
        try:
            one = hookpost.make_tenant("bench-e2e", [nginx.url("/ok/e2e")])
            wait = 120.0
            raw_profile = env.workdir / "profile-worker.txt"
            e2e = hookpost.throughput_run(nginx, one, sizes.e2e, ledgers, "e2e 1:1", run_id, wait)
            for _ in range(sizes.warmup):  # outside the profile: start-up imports are not steady state
                e2e()
            workers = [w.pid for w in stack.first]
            with bench_profile.Profiler(workers, raw_profile) if profile else nullcontext():
                results["e2e"] = median_of(e2e, label="e2e 1:1", warmup=0, repeats=sizes.repeats).as_dict()
            if profile:
                results["profile"] = {
                    "raw": str(raw_profile),
                    "top": [[round(pct, 1), name] for pct, name in bench_profile.summary(raw_profile)],
                }
            # After the 1:1 runs (imports, pools and caches warm): the base for memory growth.
            stack.rss_start_kb = stack.rss_kb()
            fan = hookpost.make_tenant("bench-fanout", [nginx.url(f"/ok/fan/{i}") for i in range(100)])
            results["fanout"] = median_of(
                hookpost.throughput_run(nginx, fan, sizes.fanout, ledgers, "fan-out", run_id, wait),
                label="fan-out",
                **reps,
            ).as_dict()
            lat = hookpost.make_tenant("bench-latency", [nginx.url("/ok/latency")])
            # Latency is measured at half the sustainable rate of the same traffic: one message
            # per publish call (each its own transaction and hand-off), not the batched 1:1 rate.
            results["e2e_single"] = median_of(
                hookpost.single_run(nginx, lat, sizes.latency_seconds, ledgers, "e2e single", run_id, wait),
                label="e2e single",
                **reps,
            ).as_dict()
            rate = max(1.0, results["e2e_single"]["median"]["deliveries_per_s"] / 2)
            results["latency"] = median_of(
                hookpost.latency_run(
                    nginx, lat, rate, sizes.latency_seconds, ledgers, "latency", run_id, wait
                ),
                label="latency",
                **reps,
            ).as_dict()
            results["worker_rss_kb"] = {"start": stack.rss_start_kb, "end": stack.rss_kb()}
        finally:
            stack.stop()

    def waiting(delay_ms: int) -> Callable[[], None]:
        """The latency-D step: Hookpost and the reference sender on a receiver that waits."""

        def step() -> None:
            hookpost.clear_history()
            stack = hookpost.Stack(env, f"latency{delay_ms}")
            try:
                results[f"latency_{delay_ms}"] = latency.measure(
                    nginx,
                    stack,
                    delay_ms,
                    spread_seconds=sizes.wait_spread_seconds,
                    backlog_seconds=sizes.wait_backlog_seconds,
                    warmup=sizes.warmup,
                    repeats=sizes.repeats,
                    ledgers=ledgers,
                    run_id=run_id,
                    wait=300.0,
                )
            finally:
                stack.stop()
                hookpost.clear_history()  # what a slow run left pending must not reach later steps

        return step

    def isolation() -> None:
        """Healthy throughput and latency without, then with, a broken tenant, in pairs.

        Each pair runs on a fresh stack (workers, broker, empty history) with a
        broken tenant of its own, created at the pair's start: measured one
        side after the other, the "with" runs came minutes after the
        "without" ones, on a database and workers that had drifted meanwhile,
        and the ratios of their medians spread by about 0.15 between full
        runs. A pair's two sides are minutes apart at most, and the ratio
        reported is the median of the pairs' ratios.
        """
        n = sizes.healthy_endpoints
        hookpost.clear_history()
        healthy = hookpost.make_tenant("bench-healthy", [nginx.url(f"/ok/healthy/{i}") for i in range(n)])
        single = results.get("e2e_single", {}).get("median", {}).get("deliveries_per_s", 20.0)
        rate = max(0.5, single / 2 / n)  # messages/s: half the single-publish delivery rate
        wait = 180.0
        sides = {side: {"throughput": Measured(), "latency": Measured()} for side in ("without", "with")}
        pairs: list[dict[str, float]] = []
        cpu: dict[str, list[dict[str, float]]] = {
            side: [] for side in ("without", "with", "without latency", "with latency")
        }
        broken_sent = 0
        jams: list[dict[str, float]] = []

        def measure(side: str, index: int, groups: dict[str, list[Process]]) -> dict[str, float]:
            label = f"isolation {side}"
            # The first "with" pair is profiled, where the broken tenant's work costs CPU: the
            # first lane during the throughput run, the retry lane during the latency run
            # (the busiest it gets: the first lane then leaves it most of the machine).
            profiled = profile and side == "with" and index == 0
            raw = {lane: env.workdir / f"profile-isolation-{lane}.txt" for lane in ("first", "retry")}

            def sampled(lane: str) -> AbstractContextManager[object]:
                processes = groups["first-lane workers" if lane == "first" else "retry worker"]
                pids = [p.pid for p in processes]
                return bench_profile.Profiler(pids, raw[lane]) if profiled else nullcontext()

            with CpuMeter(groups) as meter, sampled("first"):
                through = hookpost.throughput_run(
                    nginx, healthy, sizes.isolation_deliveries, ledgers, label, run_id, wait
                )()
            cpu[side].append(meter.shares)
            seconds = sizes.isolation_latency_seconds
            with CpuMeter(groups) as meter, sampled("retry"):
                latency = hookpost.latency_run(
                    nginx, healthy, rate, seconds, ledgers, f"{label} latency", run_id, wait
                )()
            if profiled:
                results["isolation_profile"] = {
                    lane: [[round(pct, 1), name] for pct, name in bench_profile.summary(path)]
                    for lane, path in raw.items()
                }
            cpu[f"{side} latency"].append(meter.shares)
            sides[side]["throughput"].runs.append(through)
            sides[side]["latency"].runs.append(latency)
            print(
                f"  {label} pair {index + 1}/{sizes.isolation_pairs}: "
                f"{through['deliveries_per_s']:.1f} deliveries/s, "
                f"p50/p99 {latency['p50_ms']:.1f}/{latency['p99_ms']:.1f} ms",
                flush=True,
            )
            return {"deliveries_per_s": through["deliveries_per_s"], "p99_ms": latency["p99_ms"]}

        for index in range(sizes.isolation_pairs):
            hookpost.clear_history()  # the last pair's history and broken backlog
            stack = hookpost.Stack(env, f"isolation{index}")
            try:
                for _ in range(sizes.warmup):  # a fresh stack's pools and imports
                    hookpost.throughput_run(
                        nginx, healthy, sizes.isolation_deliveries, ledgers, "isolation warm-up", run_id, wait
                    )()
                groups = {"first-lane workers": stack.first, "retry worker": [stack.retry]}
                without = measure("without", index, groups)
                failing, interval = sizes.failing_endpoints, sizes.broken_interval
                broken = hookpost.BrokenTraffic(
                    env, nginx, hanging, failing, sizes.hanging_endpoints, interval, f"bench-broken-{index}"
                ).start()
                try:
                    time.sleep(sizes.broken_warmup_seconds)
                    broken.check_alive()
                    assert broken.process is not None
                    beside = measure("with", index, {**groups, "broken publisher": [broken.process]})
                    broken.check_alive()  # the whole "with" measurement ran beside broken traffic
                finally:
                    broken.stop()
                jams.append(broken.hanging_attempt_lag())
                broken_sent += broken.sent
            finally:
                stack.stop()
            pairs.append(
                {
                    "throughput_ratio": beside["deliveries_per_s"] / without["deliveries_per_s"],
                    "p99_ratio": beside["p99_ms"] / without["p99_ms"],
                }
            )
        results["isolation_without"] = {k: v.as_dict() for k, v in sides["without"].items()}
        results["isolation_with"] = {k: v.as_dict() for k, v in sides["with"].items()}
        results["isolation_with"]["failing_endpoints"] = sizes.failing_endpoints
        results["isolation_with"]["hanging_endpoints"] = sizes.hanging_endpoints
        results["isolation_with"]["broken_messages"] = broken_sent
        results["isolation_with"]["broken_deliveries"] = broken_sent * (
            sizes.failing_endpoints + sizes.hanging_endpoints
        )
        results["isolation_hanging"] = {
            "worst_first_attempt_wait_s": max(j["worst_first_attempt_wait_s"] for j in jams),
            "endpoints_unattempted_past_bound": sum(int(j["endpoints_unattempted_past_bound"]) for j in jams),
            "endpoints_attempted": sum(int(j["endpoints_attempted"]) for j in jams),
        }
        results["isolation_pairs"] = pairs
        results["isolation_cpu"] = cpu

    def backlog_memory() -> None:
        from bench import backlog

        hookpost.clear_history()
        paths = [nginx.url(f"/ok/backlog/{i}") for i in range(sizes.backlog_endpoints)]
        tenant = hookpost.make_tenant("bench-backlog", paths)
        began = time.monotonic()
        pending = backlog.fill(tenant.model, hookpost.EVENT_TYPE, sizes.backlog_pending)
        filled_in = time.monotonic() - began
        print(f"  backlog: {pending:,} pending deliveries written in {filled_in:.0f} s", flush=True)
        stack = hookpost.Stack(env, "backlog")
        try:
            figures = backlog.measure(
                env,
                nginx,
                stack,
                warmup_seconds=sizes.backlog_warmup_seconds,
                seconds=sizes.backlog_seconds,
            )
        finally:
            stack.stop()
            hookpost.clear_history()
        results["backlog"] = {**figures, "pending": pending, "fill_seconds": filled_in}
        print(
            f"  backlog: worker RSS {figures['rss_start_kb'] / 1024:.0f} -> "
            f"{figures['rss_peak_last_third_kb'] / 1024:.0f} MB ({figures['growth_pct']:+.1f} %), "
            f"{figures['delivered']:,} delivered, {figures['duplicates']} duplicates",
            flush=True,
        )
        if figures["duplicates"]:
            raise RuntimeError(f"{figures['duplicates']} deliveries arrived twice during the backlog run")

    def in_flight() -> None:
        from bench import in_flight as step

        figures = step.measure(env, hanging, endpoints=sizes.in_flight_endpoints)
        results["in_flight"] = figures
        print(
            f"  in flight: {figures['requests_in_flight']} requests open in one worker process, "
            f"{figures.get('db_connections', 'n/a')} PostgreSQL connections, "
            f"RSS {figures.get('rss_kb', 0) / 1024:.0f} MB",
            flush=True,
        )

    steps = {
        "floor": floor,
        "naive": naive,
        "django-webhook": djw,
        "ingest": ingest,
        "delivery": delivery,
        "latency-50": waiting(50),
        "latency-200": waiting(200),
        "isolation": isolation,
        "in-flight": in_flight,
        "backlog": backlog_memory,
    }
    assert set(STEPS) == set(steps)
    if skip_djw:
        results["skipped"] = ["django-webhook (--skip-djw)"]
    for name, fn in steps.items():
        if (only is None or name in only) and not (skip_djw and name == "django-webhook"):
            _step(results, name, fn)


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl-C: every step's ``finally`` stops the processes it started.
    process_groups.exit_on_sigterm()
    try:
        raise SystemExit(main())
    except process_groups.Terminated:
        raise SystemExit(128 + signal.SIGTERM) from None
