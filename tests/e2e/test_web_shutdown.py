"""Graceful shutdown of the web tier: gunicorn, run with ``config/gunicorn.py``
as in production, finishes a publish request that is in flight when SIGTERM
arrives, and the message it accepted is kept with its deliveries."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deliveries.models import Delivery, Message
from tests.e2e import processes
from tests.e2e.conftest import _database_url
from tests.e2e.helpers import register_endpoint
from tests.e2e.receiver import Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

GRACE_SECONDS = 15


@pytest.fixture
def gunicorn(tmp_path: Path, settings) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "GUNICORN_GRACEFUL_TIMEOUT": str(GRACE_SECONDS),
        "HOOKPOST_ALLOWED_TARGET_NETWORKS": "127.0.0.0/8",
    }
    with processes.gunicorn(env, tmp_path / "gunicorn.log") as server:
        yield server.proc, server.port, server.log


def _read_response(conn: socket.socket) -> tuple[int, dict[str, object]]:
    data = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            None,
        )
        if length is not None and len(body) >= length:
            break
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


def test_sigterm_finishes_the_publish_request_in_flight_and_keeps_its_message(
    gunicorn, e2e_settings, make_client, tenant, event_type, receiver: Receiver
):
    proc, port, log = gunicorn
    key = make_client(tenant)
    endpoint = register_endpoint(key.client, tenant, receiver, "/drain")
    body = json.dumps({"event_type": event_type.name, "payload": {"n": 1}}).encode()
    head = (
        f"POST /api/v1/tenants/{tenant.uid}/messages/ HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {key.raw}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()

    # Given a publish request whose body is still arriving
    conn = socket.create_connection(("127.0.0.1", port), timeout=GRACE_SECONDS)
    try:
        conn.sendall(head + body[:10])
        time.sleep(1.0)  # the worker has taken the request and waits for the rest

        # When gunicorn is told to stop, and the rest of the body arrives after that
        proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert proc.poll() is None, "gunicorn quit with a request in flight"
        conn.sendall(body[10:])
        status, answer = _read_response(conn)
    finally:
        conn.close()

    # Then the request is answered as usual, and gunicorn exits cleanly afterwards...
    assert status == 202, answer
    assert proc.wait(timeout=GRACE_SECONDS) == 0, log.read_text()[-2000:]
    # ...and what it accepted is kept: the message and its delivery, due for the scheduler
    message = Message.objects.get(uid=answer["id"])
    delivery = Delivery.objects.get(message=message, endpoint__uid=endpoint.uid)
    assert delivery.status == Delivery.Status.PENDING
