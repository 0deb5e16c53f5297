"""``python manage.py create_tenant <uid> [--name N]``"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from webhooks import services
from webhooks.errors import ServiceError


class Command(BaseCommand):
    help = "Create a tenant."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("uid", help="Slug used in API paths, e.g. acme")
        parser.add_argument("--name", default="", help="Display name (default: the uid)")
        parser.add_argument("--retention-days", type=int, default=30)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            tenant = services.tenant_create(
                uid=options["uid"], name=options["name"], retention_days=options["retention_days"]
            )
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"Created tenant {tenant.uid} ({tenant.name})")
