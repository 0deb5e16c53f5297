"""``python manage.py seed_demo``: a demo tenant, event type and API key for ``make run``.

Safe to run again: existing rows are kept; a new API key is printed each time
because keys are stored hashed and cannot be shown twice.
"""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from webhooks import services
from webhooks.models import EventType, Tenant

DEMO_TENANT = "demo"
DEMO_EVENT_TYPE = "demo.ping"


class Command(BaseCommand):
    help = "Create the demo tenant, event type and a fresh API key, and show how to publish."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.filter(uid=DEMO_TENANT).first() or services.tenant_create(
            uid=DEMO_TENANT, name="Demo tenant"
        )
        if not EventType.objects.filter(name=DEMO_EVENT_TYPE).exists():
            services.event_type_create(name=DEMO_EVENT_TYPE, description="A demo event.")
        _, raw = services.api_key_create(tenant=tenant, name="make run demo")
        base = options["base_url"]
        self.stdout.write(
            f"\nDemo tenant '{tenant.uid}' is ready. API key (shown once): {raw}\n"
            f"API docs: {base}/api/docs/\n"
            "Publish an event:\n"
            f"  curl -X POST {base}/api/v1/tenants/{tenant.uid}/messages/ \\\n"
            f"    -H 'Authorization: Bearer {raw}' -H 'Content-Type: application/json' \\\n"
            f"    -d '{{\"event_type\": \"{DEMO_EVENT_TYPE}\", \"payload\": {{\"hello\": \"world\"}}}}'\n"
        )
