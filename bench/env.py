"""Where the benchmark runs: its own PostgreSQL database and Redis DB, ports, process helpers.

The benchmark never touches another database: it drops and recreates only the
database named in ``BENCH_DATABASE_URL`` (default ``hookpost_bench``), and refuses
names without ``bench`` in them, so a typo cannot wipe a development database.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bench import process_groups

ROOT = Path(__file__).resolve().parents[1]
VAR = ROOT / "var" / "bench"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/hookpost_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"
# The worker configuration the docs recommend (docs/operations.md, "Sizing"):
# Hookpost's workers run its defaults (threads pool, 4 threads: the sends run
# on each process's send loop), and the first lane has a process per core of
# this 2-core machine (one Python process cannot use a second core). The
# baselines' workers get as many processes, each with BASELINE_CONCURRENCY
# threads: they hold a thread per request, and fewer would only starve them.
BASELINE_CONCURRENCY = 16
WORKER_PROCESSES = 2


@dataclass(frozen=True)
class BenchEnv:
    """The database and Redis a run uses, and the environment every child process gets."""

    database_url: str
    redis_url: str
    workdir: Path

    @property
    def database_name(self) -> str:
        return urlsplit(self.database_url).path.lstrip("/")

    def admin_url(self) -> str:
        """The same server's ``postgres`` database, to drop and create ours."""
        parts = urlsplit(self.database_url)
        return urlunsplit(parts._replace(path="/postgres"))

    def hookpost_env(self) -> dict[str, str]:
        """Production-like settings (DEBUG off: DEBUG keeps every SQL query in memory)."""
        return {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DEBUG": "false",
            "SECRET_KEY": "bench-only-secret-key-not-for-production-0123456789",
            # A Fernet key (base64 of "bench-only-encryption-key-012345"): secrets encrypted
            # at rest, as production requires.
            "HOOKPOST_ENCRYPTION_KEY": "YmVuY2gtb25seS1lbmNyeXB0aW9uLWtleS0wMTIzNDU=",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            # The bench talks plain http to gunicorn, with no TLS proxy in front.
            "SECURE_SSL_REDIRECT": "false",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            # Local receivers live on 127.0.0.1, which the target policy refuses by default.
            "HOOKPOST_ALLOWED_TARGET_NETWORKS": "127.0.0.0/8",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "json",
        }


def worker_command(
    python: str,
    app: str,
    queues: str,
    name: str,
    extra: tuple[str, ...] = (),
    concurrency: int | None = None,
) -> list[str]:
    """``celery worker`` as every benchmark worker runs: threads pool, quiet, no gossip,
    mingle or heartbeat (nothing the measured work needs); ``concurrency`` threads, or
    the app's own default (Hookpost's settings) when None."""
    threads = ("--concurrency", str(concurrency)) if concurrency else ()
    return [
        python, "-m", "celery", "-A", app, "worker", *extra,
        "--pool", "threads", *threads, "-Q", queues,
        "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
        "--hostname", f"bench-{name}@%h",
    ]  # fmt: skip


def make_env(database_url: str | None, redis_url: str | None, workdir: Path | None) -> BenchEnv:
    env = BenchEnv(
        database_url=database_url or os.environ.get("BENCH_DATABASE_URL") or DEFAULT_DATABASE_URL,
        redis_url=redis_url or os.environ.get("BENCH_REDIS_URL") or DEFAULT_REDIS_URL,
        workdir=workdir or VAR / "run",
    )
    if "bench" not in env.database_name:
        raise SystemExit(f"refusing database {env.database_name!r}: its name must contain 'bench'")
    return env


def reset_database(env: BenchEnv) -> None:
    """Drop and recreate the benchmark database (and nothing else)."""
    import psycopg

    with psycopg.connect(env.admin_url(), autocommit=True) as conn:
        # Close leftovers of an aborted earlier run that would block DROP.
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (env.database_name,),
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{env.database_name}"')
        conn.execute(f'CREATE DATABASE "{env.database_name}"')


def flush_redis(env: BenchEnv) -> None:
    """Empty the benchmark's Redis DB; only while no worker of ours runs (kombu keeps bindings there)."""
    import redis

    redis.Redis.from_url(env.redis_url).flushdb()


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.closing(socket.socket()) as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s")


class Process:
    """A child process in its own process group (bench/process_groups.py), logging to a file."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.cmd = cmd
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            self.proc = process_groups.start(
                cmd, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def pids(self) -> list[int]:
        """The process and its descendants (Celery's embedded beat, gunicorn's workers)."""
        return [self.pid, *_descendants(self.pid)]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_kb(self) -> int:
        """Resident memory of the process and its children (Celery's pool lives in-process)."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        return total

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the whole group (Celery's -B beat and gunicorn's workers are in it),
        SIGKILL to what is left after ``timeout`` s or once the process exited."""
        process_groups.stop(self.proc, signal.SIGTERM, timeout)

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *_descendants(child)]
    return found


@contextlib.contextmanager
def running(process: Process) -> Iterator[Process]:
    try:
        yield process
    finally:
        process.stop()


def python() -> str:
    return sys.executable


def which(name: str) -> str | None:
    """``shutil.which`` plus /usr/sbin, where Debian puts nginx (not on a non-root PATH)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
