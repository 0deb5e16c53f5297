"""``python manage.py create_api_key (--tenant <uid> | --operator)``; prints the key once."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from webhooks import services
from webhooks.models import Tenant


class Command(BaseCommand):
    help = "Create an API key and print it. It is stored hashed and cannot be shown again."

    def add_arguments(self, parser: CommandParser) -> None:
        scope = parser.add_mutually_exclusive_group(required=True)
        scope.add_argument("--tenant", help="uid of the tenant the key may act for")
        scope.add_argument("--operator", action="store_true", help="a key for all tenants")
        parser.add_argument("--name", default="", help="What the key is for")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = None
        if options["tenant"]:
            tenant = Tenant.objects.filter(uid=options["tenant"]).first()
            if tenant is None:
                raise CommandError(f"No tenant with uid {options['tenant']!r}.")
        key, raw = services.api_key_create(tenant=tenant, name=options["name"])
        scope = f"tenant {tenant.uid}" if tenant else "operator"
        self.stderr.write(f"Created {scope} key {key.prefix}… — store it now, it is not shown again:")
        self.stdout.write(raw)
