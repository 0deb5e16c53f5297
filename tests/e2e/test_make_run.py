"""``make run`` on a machine without PostgreSQL or Redis: it comes up on
SQLite and the embedded Redis, with an encryption key it made for the endpoint
secrets, and delivers the demo event, verified."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import time
from pathlib import Path

import pytest

from bench import process_groups
from tests.e2e.private_redis import free_port
from tests.e2e.processes import process_group, stop_group

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _copy_checkout(target: Path) -> None:
    """The working tree as a clean clone would have it, sharing the installed venv."""
    listed = process_groups.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, timeout=60)
    listed.check_returncode()
    files = listed.stdout.split()
    for name in files:
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)  # keeps mtimes: make sees the venv as installed
    (target / ".venv").symlink_to(ROOT / ".venv")


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_make_run_delivers_the_demo_event_without_external_services(tmp_path: Path) -> None:
    checkout = tmp_path / "hookpost"
    checkout.mkdir()
    _copy_checkout(checkout)
    ports = {
        "HOOKPOST_PORT": free_port(),
        "RECEIVER_PORT": free_port(),
        "EMBEDDED_REDIS_PORT": free_port(),
    }
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "HOOKPOST_ENCRYPTION_KEY")
    }
    log = tmp_path / "make-run.log"
    make_run = ["make", "run", *(f"{k}={v}" for k, v in ports.items())]

    # Ctrl-C in a terminal sends SIGINT to the whole process group; so does the exit of this block
    with process_group(make_run, cwd=checkout, env=env, log=log, stop_signal=signal.SIGINT, grace=30) as proc:
        deadline = time.monotonic() + 150
        while b"the demo receiver verified its signature" not in log.read_bytes():
            assert proc.poll() is None, f"make run exited early:\n{log.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"no verified demo event:\n{log.read_text()[-4000:]}"
            time.sleep(0.5)
        text = log.read_text()
        assert "verified OK" in text  # the receiver's own line for the event
        assert (checkout / "db.sqlite3").exists()  # SQLite, not a server
        assert "starting the embedded Redis" in text
        # the endpoint secrets are encrypted with a key make run generated and kept
        assert "generated the encryption key" in text
        assert (checkout / "var" / "encryption-key").stat().st_mode & 0o077 == 0
        with sqlite3.connect(checkout / "db.sqlite3") as db:
            stored = [row[0] for row in db.execute("SELECT secret FROM webhooks_endpointsecret")]
        assert stored and all(value.startswith("fernet:") for value in stored)

        # Ctrl-C stops make, and everything it started, the embedded Redis included.
        assert stop_group(proc, signal.SIGINT, timeout=30), (
            f"make run outlived Ctrl-C:\n{log.read_text()[-2000:]}"
        )
        deadline = time.monotonic() + 15  # make does not wait for the Redis it stops
        while any(_port_open(port) for port in ports.values()):
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
