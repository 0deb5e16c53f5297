"""The baselines, measured in the same run and against the same nginx as Hookpost.

- floor: a plain loop of POSTs with urllib3 (a blocking client; Hookpost's
  transport is aiohttp), keep-alive, no database, no queue: the most a
  single Python sender can push at this receiver on this machine;
- naive: one plain Celery task per delivery doing ``requests.post`` with
  ``self.retry`` (bench/naive_app.py), the same worker processes, pool and concurrency;
- django-webhook: PyPI ``django-webhook`` in its own virtual environment
  (bench/djw_project), one model save per event, its Celery task delivering
  (the same worker processes, pool and concurrency).

Every run's rate is deliveries / (last arrival at nginx - start of sending),
and every run is checked by the ledger.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import urllib3

from bench import ledger, process_groups
from bench.env import (
    BASELINE_CONCURRENCY,
    ROOT,
    VAR,
    WORKER_PROCESSES,
    BenchEnv,
    Process,
    flush_redis,
    worker_command,
)
from bench.receivers import Nginx, wait_for_arrivals

DJW_VENV = VAR / "djw-venv"
DJW_REQUIREMENTS = ROOT / "bench" / "djw_project" / "requirements.txt"
DJW_MISSING = (
    "the django-webhook baseline's virtualenv (var/bench/djw-venv) is missing or out of date: "
    "build it with `make bench-djw`, or pass --skip-djw"
)
PAYLOAD = json.dumps({"type": "bench.event", "data": {"order": 1234, "amount": "19.99", "currency": "EUR"}})


def floor_run(
    nginx: Nginx, count: int, ledgers: ledger.Ledgers, run_id: list[int]
) -> Callable[[], dict[str, float]]:
    """A loop of ``count`` POSTs over one keep-alive connection."""
    pool = urllib3.PoolManager(num_pools=4, maxsize=1)
    url = nginx.url("/ok/floor")

    def run() -> dict[str, float]:
        run_id[0] += 1
        since = nginx.mark()
        keys = [f"floor-{run_id[0]}-{i}" for i in range(count)]
        start = time.time()
        for key in keys:
            response = pool.request(
                "POST",
                url,
                body=PAYLOAD,
                headers={"content-type": "application/json", "webhook-id": key},
                retries=False,
            )
            assert response.status == 204, response.status
        sent = time.time()
        got = wait_for_arrivals(nginx, since, count, timeout=30)
        result = ledgers.add(ledger.check("floor", ((k, "/ok/floor") for k in keys), got))
        last = max((a.at for a in got), default=sent)
        return {"deliveries_per_s": count / max(last - start, sent - start, 1e-6), "lost": result.lost}

    return run


class NaiveWorker:
    """The naive baseline's Celery workers (Hookpost's first-lane processes, pool and concurrency)."""

    def __init__(self, env: BenchEnv) -> None:
        self.env = env
        self.processes = [
            Process(
                f"naive-worker-{i}",
                worker_command(
                    sys.executable,
                    "bench.naive_app",
                    "bench.naive",
                    f"naive-{i}",
                    concurrency=BASELINE_CONCURRENCY,
                ),
                {"BENCH_REDIS_URL": env.redis_url},
                env.workdir / f"naive-worker-{i}.log",
            )
            for i in range(WORKER_PROCESSES)
        ]

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


def naive_run(
    env: BenchEnv, nginx: Nginx, count: int, ledgers: ledger.Ledgers, run_id: list[int]
) -> Callable[[], dict[str, float]]:
    """Enqueue ``count`` tasks while the naive worker runs; time to the last arrival."""
    import os

    os.environ["BENCH_REDIS_URL"] = env.redis_url
    from bench.naive_app import deliver

    url = nginx.url("/ok/naive")

    def run() -> dict[str, float]:
        run_id[0] += 1
        since = nginx.mark()
        keys = [f"naive-{run_id[0]}-{i}" for i in range(count)]
        start = time.time()
        for key in keys:
            deliver.delay(url, PAYLOAD, key)
        got = wait_for_arrivals(nginx, since, count, timeout=max(60, count / 5))
        result = ledgers.add(ledger.check("naive", ((k, "/ok/naive") for k in keys), got))
        last = max((a.at for a in got), default=time.time())
        return {"deliveries_per_s": result.received / max(last - start, 1e-6), "lost": result.lost}

    return run


def djw_python() -> Path | None:
    """The python of var/bench/djw-venv, if ``make bench-djw`` built it from the current
    requirements; None otherwise. The benchmark never installs anything itself."""
    marker = DJW_VENV / ".installed"
    if not marker.exists() or marker.read_text() != DJW_REQUIREMENTS.read_text():
        return None
    return DJW_VENV / "bin" / "python"


def djw_version() -> str:
    python = DJW_VENV / "bin" / "python"
    if not python.exists():  # --skip-djw on a machine that never built the venv
        return "not installed"
    out = process_groups.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('django-webhook'))"], timeout=60
    )
    return out.stdout.strip() or "unknown"


class DjwBaseline:
    """django-webhook's Celery worker plus its driver, both in the package's own venv."""

    def __init__(self, env: BenchEnv, nginx: Nginx) -> None:
        self.env = env
        self.nginx = nginx
        python = djw_python()
        if python is None:
            raise RuntimeError(DJW_MISSING)
        self.python = str(python)
        # Its own settings module: this process's environment names Hookpost's.
        self.child_env = {
            "BENCH_DATABASE_URL": env.database_url,
            "BENCH_REDIS_URL": env.redis_url,
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "bench.djw_project.settings",
        }
        self._drive("setup", nginx.url("/djw/hook"))
        self.processes = [
            Process(
                f"djw-worker-{i}",
                worker_command(
                    self.python,
                    "bench.djw_project.celery_app",
                    "bench.djw",
                    f"djw-{i}",
                    concurrency=BASELINE_CONCURRENCY,
                ),
                self.child_env,
                env.workdir / f"djw-worker-{i}.log",
            )
            for i in range(WORKER_PROCESSES)
        ]

    def _drive(self, *args: str) -> dict[str, float]:
        import os

        out = process_groups.run(
            [self.python, "-m", "bench.djw_project.drive", *args],
            cwd=ROOT,
            env={**os.environ, **self.child_env},
            timeout=600,
        )
        if out.returncode != 0:
            raise RuntimeError(f"django-webhook driver {args[0]} failed: {out.stderr[-2000:]}")
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    def runner(
        self, count: int, ledgers: ledger.Ledgers, run_id: list[int]
    ) -> Callable[[], dict[str, float]]:
        def run() -> dict[str, float]:
            run_id[0] += 1
            since = self.nginx.mark()
            timing = self._drive("send", str(run_id[0]), str(count))
            keys = [f"djw-{run_id[0]}-{i}" for i in range(count)]
            got = wait_for_arrivals(self.nginx, since, count, timeout=max(60, count / 5))
            result = ledgers.add(ledger.check("django-webhook", ((k, "/djw/hook") for k in keys), got))
            last = max((a.at for a in got), default=time.time())
            return {
                "deliveries_per_s": result.received / max(last - timing["start"], 1e-6),
                "lost": result.lost,
            }

        return run

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


def reset_broker(env: BenchEnv) -> None:
    """Between baselines, with no worker running: an empty Redis DB."""
    flush_redis(env)
