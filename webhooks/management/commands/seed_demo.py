"""``python manage.py seed_demo``: a demo tenant, event type and API key for ``make run``.

With ``--receiver-url`` it also registers that URL (the demo receiver) as an
endpoint and writes the endpoint's signing secrets to ``--secret-file``, one
per line, for the receiver to verify with.

Safe to run again: existing rows are kept; a new API key is printed each time
because keys are stored hashed and cannot be shown twice.
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


class Command(BaseCommand):
    help = "Create the demo tenant, event type and a fresh API key, and show how to publish."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")
        parser.add_argument("--receiver-url", default="", help="Register this URL as the demo endpoint")
        parser.add_argument("--secret-file", default="var/demo-receiver-secrets")
        parser.add_argument("--key-file", default="", help="Also write the new API key here (0600)")
        parser.add_argument(
            "--admin-file", default="", help="Create a superuser 'admin' and write its login here (0600)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.filter(uid=DEMO_TENANT).first() or services.tenant_create(
            uid=DEMO_TENANT, name="Demo tenant"
        )
        if not EventType.objects.filter(name=DEMO_EVENT_TYPE).exists():
            services.event_type_create(name=DEMO_EVENT_TYPE, description="A demo event.")
        _, raw = services.api_key_create(tenant=tenant, name="make run demo")
        if options["receiver_url"]:
            endpoint = tenant.endpoints.filter(url=options["receiver_url"]).first()
            if endpoint is None:
                endpoint = services.endpoint_create(
                    tenant=tenant, url=options["receiver_url"], description="make run demo receiver"
                ).endpoint
            secrets = selectors.endpoint_signing_secrets(endpoint=endpoint)
            _write_private(Path(options["secret_file"]), "\n".join(secrets) + "\n")
        if options["key_file"]:
            _write_private(Path(options["key_file"]), raw + "\n")
        if options["admin_file"]:
            self._demo_admin(Path(options["admin_file"]))
        base = options["base_url"]
        self.stdout.write(
            f"\nDemo tenant '{tenant.uid}' is ready. API key (shown once): {raw}\n"
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


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)
