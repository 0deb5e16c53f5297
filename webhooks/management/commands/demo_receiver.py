"""``python manage.py demo_receiver``: an example webhook receiver on 127.0.0.1.

Verifies every POST with ``webhooks.signing.verify`` and prints one line per
request::

    msg_01J... demo.ping verified OK
    msg_01J... demo.ping duplicate, already processed
    msg_01J... - failed: NoMatchingSignature: no signature in webhook-signature matches ...

Answers 204 when the request verifies (a duplicate ``webhook-id`` too: it was
processed once and acknowledging it stops the sender's retries) and 401 when
it does not. Needs no database, web or worker process: only a secret, from
``--secret`` (repeatable, for a rotation), ``--secret-file`` (one per line) or,
with neither, a fresh one that is printed.

``--port 0`` picks a free port; the first line printed is always
``listening on http://127.0.0.1:<port>/``.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from config.numbers import NumberRejected, parse_int
from webhooks import signing

HOST = "127.0.0.1"  # a demo: never listen beyond this machine
MAX_BODY_BYTES = 1024 * 1024
SEEN_IDS_KEPT = 10_000


class SeenIds:
    """The ``webhook-id``s processed so far, oldest forgotten first (bounded memory)."""

    def __init__(self, capacity: int = SEEN_IDS_KEPT) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def add(self, msg_id: str) -> bool:
        """Record ``msg_id``; False if it was already there."""
        with self._lock:
            if msg_id in self._ids:
                return False
            self._ids[msg_id] = None
            if len(self._ids) > self._capacity:
                self._ids.popitem(last=False)
            return True


def printable(text: str, limit: int = 100) -> str:
    """Sender-supplied text made safe for one terminal line."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text[:limit])
    return cleaned or "-"


def event_type(body: bytes) -> str:
    """The ``type`` of a verified body, or ``-`` when it has none."""
    try:
        payload = json.loads(body)
    except ValueError:
        return "-"
    kind = payload.get("type") if isinstance(payload, dict) else None
    return printable(kind) if isinstance(kind, str) else "-"


def make_handler(
    secrets: list[str], tolerance: int, seen: SeenIds, emit: Callable[[str], None]
) -> type[BaseHTTPRequestHandler]:
    """The request handler class, bound to the receiver's secrets and state."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            try:
                declared = self.headers.get("Content-Length") or "0"
                length = parse_int(declared, minimum=0, maximum=MAX_BODY_BYTES)
            except NumberRejected:
                self._answer(413)
                return
            body = self.rfile.read(length)
            msg_id = printable(self.headers.get("webhook-id") or "")
            headers = {name: value for name, value in self.headers.items()}
            try:
                signing.verify(secrets, headers, body, tolerance=tolerance)
            except signing.VerificationError as exc:
                # Never parse or print an unverified body.
                emit(f"{msg_id} - failed: {type(exc).__name__}: {exc}")
                self._answer(401)
                return
            if seen.add(self.headers["webhook-id"].strip()):
                emit(f"{msg_id} {event_type(body)} verified OK")
            else:
                emit(f"{msg_id} {event_type(body)} duplicate, already processed")
            self._answer(204)

        def do_GET(self) -> None:
            self._answer(405)

        def _answer(self, status: int) -> None:
            self.send_response(status)
            if status == 405:
                self.send_header("Allow", "POST")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per event is printed by do_POST instead of the access log

    return Handler


def read_secrets(values: list[str] | None, path: str | None) -> list[str]:
    """Secrets from ``--secret`` values and a ``--secret-file`` (blank lines and ``#`` comments skipped)."""
    found = list(values or [])
    if path:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise CommandError(f"cannot read --secret-file: {exc}") from exc
        found += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    for secret in found:
        try:
            signing.decode_secret(secret)
        except signing.InvalidSecret as exc:
            raise CommandError(f"invalid secret: {exc}") from exc
    return found


class Command(BaseCommand):
    help = "Run an example webhook receiver on 127.0.0.1 that verifies Standard Webhooks signatures."
    requires_system_checks: list[str] = []  # needs no database or models

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=9000, help="0 picks a free port (default 9000)")
        parser.add_argument(
            "--secret", action="append", help="whsec_... secret; repeat to accept several (rotation)"
        )
        parser.add_argument("--secret-file", help="file with one secret per line")
        parser.add_argument(
            "--tolerance", type=int, default=signing.DEFAULT_TOLERANCE_SECONDS, help="seconds of clock skew"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        secrets = read_secrets(options["secret"], options["secret_file"])
        generated = not secrets
        if generated:
            secrets = [signing.generate_secret()]
        lock = threading.Lock()

        def emit(line: str) -> None:
            with lock:  # handler threads print whole lines, flushed for pipes
                self.stdout.write(line)
                self.stdout.flush()

        handler = make_handler(secrets, options["tolerance"], SeenIds(), emit)
        try:
            server = ThreadingHTTPServer((HOST, options["port"]), handler)
        except OSError as exc:
            raise CommandError(f"cannot listen on {HOST}:{options['port']}: {exc}") from exc
        server.daemon_threads = True
        emit(f"listening on http://{HOST}:{server.server_address[1]}/")
        if generated:
            emit(f"no --secret given; verifying with a new one: {secrets[0]}")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
