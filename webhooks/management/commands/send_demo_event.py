"""``python manage.py send_demo_event``: the last step of ``make run``.

Waits for the API, publishes one ``demo.ping`` event for the demo tenant
through the REST API (like any internal service would), waits until the demo
receiver has accepted it (it answers 2xx only for a verified signature), and
prints where to look. Then it stays up (``--wait``), because honcho stops every
process when one exits.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Publish a demo event through the API and wait until the demo receiver verified it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")
        parser.add_argument("--key-file", default="var/demo-api-key")
        parser.add_argument("--credentials-file", default="var/demo-admin")
        parser.add_argument("--timeout", type=float, default=90.0)
        parser.add_argument("--wait", action="store_true", help="Stay running afterwards")

    def handle(self, *args: Any, **options: Any) -> None:
        base, timeout = options["base_url"].rstrip("/"), options["timeout"]
        key = Path(options["key_file"]).read_text().strip()
        deadline = time.monotonic() + timeout
        self._until(deadline, "the API to be ready", lambda: _get(f"{base}/readyz", None)[0] == 200)
        status, body = _post(
            f"{base}/api/v1/tenants/demo/messages/",
            key,
            {"event_type": "demo.ping", "payload": {"hello": "world", "sent_by": "make run"}},
        )
        if status != 202:
            raise CommandError(f"publishing the demo event failed: HTTP {status} {body}")
        message_id = body["id"]

        def delivered() -> bool:
            code, detail = _get(f"{base}/api/v1/tenants/demo/messages/{message_id}/", key)
            return code == 200 and any(d["status"] == "succeeded" for d in detail["deliveries"])

        self._until(deadline, "the demo receiver to verify the event", delivered)
        credentials = Path(options["credentials_file"])
        login = credentials.read_text().strip() if credentials.exists() else "(see create_tenant_user)"
        self.stdout.write(
            self.style.SUCCESS(
                f"\nDemo event {message_id} was delivered, and the demo receiver verified its signature.\n"
            )
            + f"  API key:  {key}   (kept in {options['key_file']}; the same on every make run)\n"
            f"            export HOOKPOST_API_KEY=$(cat {options['key_file']})\n"
            f"  Admin:    {base}/admin/   login {login}\n"
            f"  API docs: {base}/api/docs/\n"
            f"  Delivery: GET {base}/api/v1/tenants/demo/messages/{message_id}/\n"
            "  Commands: .venv/bin/python manage.py ... (they read the .env make run wrote)\n"
        )
        while options["wait"]:
            time.sleep(3600)

    def _until(self, deadline: float, what: str, probe: Any) -> None:
        while time.monotonic() < deadline:
            try:
                if probe():
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
                pass
            time.sleep(0.5)
        raise CommandError(f"timed out waiting for {what}")


def _request(url: str, key: str | None, data: dict[str, Any] | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    body = json.dumps(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _get(url: str, key: str | None) -> tuple[int, Any]:
    return _request(url, key)


def _post(url: str, key: str, data: dict[str, Any]) -> tuple[int, Any]:
    return _request(url, key, data)
