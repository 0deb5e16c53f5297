"""``python manage.py seed_demo``: a demo tenant, event type and API key for ``make run``.

With ``--receiver-url`` it also registers that URL (the demo receiver) as an
endpoint and writes the endpoint's signing secrets to ``--secret-file``, one
per line, for the receiver to verify with.

Safe to run again: existing rows are kept. The key in ``--key-file`` is reused
while it is active; otherwise a new one is made. Either way every other demo key
is revoked, so only one works at a time.
"""

from __future__ import annotations

import secrets as secrets_module
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand

from webhooks import selectors, services
from webhooks.models import EventType, Tenant

DEMO_TENANT = "demo"
DEMO_EVENT_TYPE = "demo.ping"
DEMO_KEY_NAME = "make run demo"


class Command(BaseCommand):
    help = "Create the demo tenant, event type and its API key, and show how to publish."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")
        parser.add_argument("--receiver-url", default="", help="Register this URL as the demo endpoint")
        parser.add_argument("--secret-file", default="var/demo-receiver-secrets")
        parser.add_argument(
            "--key-file",
            default="",
            help="Reuse the key kept here while it is active; keep the key here (0600)",
        )
        parser.add_argument(
            "--admin-file", default="", help="Create a superuser 'admin' and write its login here (0600)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.filter(uid=DEMO_TENANT).first() or services.tenant_create(
            uid=DEMO_TENANT, name="Demo tenant"
        )
        if not EventType.objects.filter(name=DEMO_EVENT_TYPE).exists():
            services.event_type_create(name=DEMO_EVENT_TYPE, description="A demo event.")
        key_file = Path(options["key_file"]) if options["key_file"] else None
        raw, reused = _demo_key(tenant, key_file)
        if options["receiver_url"]:
            endpoint = tenant.endpoints.filter(url=options["receiver_url"]).first()
            if endpoint is None:
                endpoint = services.endpoint_create(
                    tenant=tenant, url=options["receiver_url"], description="make run demo receiver"
                ).endpoint
            secrets = selectors.endpoint_signing_secrets(endpoint=endpoint)
            _write_private(Path(options["secret_file"]), "\n".join(secrets) + "\n")
        if key_file is not None and not reused:
            _write_private(key_file, raw + "\n")
        if options["admin_file"]:
            self._demo_admin(Path(options["admin_file"]))
        base = options["base_url"]
        self.stdout.write(
            f"\nDemo tenant '{tenant.uid}' is ready. API key ({'reused' if reused else 'new'}): {raw}\n"
            f"API docs: {base}/api/docs/\n"
            "Publish an event:\n"
            f"  curl -X POST {base}/api/v1/tenants/{tenant.uid}/messages/ \\\n"
            f"    -H 'Authorization: Bearer {raw}' -H 'Content-Type: application/json' \\\n"
            f'    -d \'{{"event_type": "{DEMO_EVENT_TYPE}", "payload": {{"hello": "world"}}}}\'\n'
        )

    def _demo_admin(self, path: Path) -> None:
        """A superuser for the local admin; its password is kept in ``path``."""
        from django.contrib.auth import get_user_model

        User = get_user_model()
        if path.exists() and User.objects.filter(username="admin").exists():
            return
        password = secrets_module.token_urlsafe(12)
        user = User.objects.filter(username="admin").first() or User(
            username="admin", email="admin@localhost"
        )
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        _write_private(path, f"admin / {password}\n")


def _demo_key(tenant: Tenant, key_file: Path | None) -> tuple[str, bool]:
    """The demo key and whether it was reused: ``key_file``'s while active, else a new one.

    Every other active demo key of ``tenant`` is revoked.
    """
    raw = key_file.read_text().strip() if key_file is not None and key_file.is_file() else ""
    key = selectors.api_key_get_active(raw=raw) if raw else None
    reused = key is not None and key.tenant_id == tenant.pk and key.name == DEMO_KEY_NAME
    if key is None or not reused:
        key, raw = services.api_key_create(tenant=tenant, name=DEMO_KEY_NAME)
    for stale in tenant.api_keys.filter(name=DEMO_KEY_NAME, revoked_at__isnull=True).exclude(pk=key.pk):
        services.api_key_revoke(key=stale)
    return raw, reused


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)
