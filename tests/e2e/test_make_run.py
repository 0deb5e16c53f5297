"""``make run`` on a machine without PostgreSQL or Redis: it comes up on
SQLite and the embedded Redis, with an encryption key it made for the endpoint
secrets, and delivers the demo event, verified."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from bench import process_groups
from tests.e2e.helpers import wait_until
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


def _readme_blocks(section: str) -> list[str]:
    """The ```sh blocks of the README's ``## section``."""
    text = (ROOT / "README.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", body, re.S)


def _follow_the_readme(checkout: Path, ports: dict[str, int], tmp_path: Path) -> None:
    """Run the README's commands as written (on this run's ports) from a shell that has
    nothing but PATH and HOME: no venv, no settings, no key in its environment."""
    shell = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8"}

    def run(script: str) -> str:
        script = script.replace("127.0.0.1:8000", f"127.0.0.1:{ports['HOOKPOST_PORT']}")
        script = script.replace("127.0.0.1:9000", f"127.0.0.1:{ports['RECEIVER_PORT']}")
        done = process_groups.run(
            ["bash", "-euo", "pipefail", "-c", script], cwd=checkout, env=shell, timeout=60
        )
        assert done.returncode == 0, f"{script}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    publish, register = _readme_blocks("Publish an event")
    published = json.loads(run(publish))
    assert published["deliveries"] == 1, published
    # The same shell as the block before: what it exported is still there.
    exported = "\n".join(line for line in publish.splitlines() if line.startswith("export "))
    endpoint = json.loads(run(f"{exported}\n{register}"))
    assert endpoint["url"].endswith("/webhooks/orders"), endpoint

    key = (checkout / "var" / "demo-api-key").read_text().strip()
    base = f"http://127.0.0.1:{ports['HOOKPOST_PORT']}/api/v1/tenants/demo/messages/"
    message = _api(base, key, {"event_type": "demo.ping", "payload": {"to": "both endpoints"}})
    assert message["deliveries"] == 2, message
    # Both deliveries succeed: the demo receiver verified the second endpoint's signature too.
    wait_until(
        lambda: [d["status"] for d in _api(f"{base}{message['id']}/", key)["deliveries"]]
        == ["succeeded"] * 2,
        timeout=30,
        what="both deliveries to succeed",
        interval=0.5,
    )

    (tenants,) = _readme_blocks("Tenants and API keys")
    # Management commands by hand: they read the .env that make run wrote.
    creates = [line for line in tenants.splitlines() if line.startswith(".venv/bin/python manage.py create_")]
    outputs = [run(line) for line in creates]
    assert len(creates) == 3 and "hp_" in outputs[1], outputs


def _api(url: str, key: str, body: dict[str, object] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


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
        if k
        not in (
            "DATABASE_URL",
            "REDIS_URL",
            "DJANGO_SETTINGS_MODULE",
            "HOOKPOST_ENCRYPTION_KEY",
            "HOOKPOST_DOTENV",
        )
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

        # The summary says what comes next: the key, and how to put it in the shell.
        key = (checkout / "var" / "demo-api-key").read_text().strip()
        assert f"API key:  {key}" in text
        assert "export HOOKPOST_API_KEY=$(cat var/demo-api-key)" in text
        _follow_the_readme(checkout, ports, tmp_path)

        # Ctrl-C stops make, and everything it started, the embedded Redis included.
        assert stop_group(proc, signal.SIGINT, timeout=30), (
            f"make run outlived Ctrl-C:\n{log.read_text()[-2000:]}"
        )
        deadline = time.monotonic() + 15  # make does not wait for the Redis it stops
        while any(_port_open(port) for port in ports.values()):
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
