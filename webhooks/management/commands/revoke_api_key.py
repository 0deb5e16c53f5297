"""``python manage.py revoke_api_key <prefix>``"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from webhooks import services
from webhooks.models import ApiKey


class Command(BaseCommand):
    help = "Revoke an API key by its shown prefix (hp_xxxxxxx) or id (key_…)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("key", help="The key's prefix or id")

    def handle(self, *args: Any, **options: Any) -> None:
        ident = options["key"]
        keys = list(ApiKey.objects.filter(revoked_at__isnull=True, prefix=ident)) or list(
            ApiKey.objects.filter(revoked_at__isnull=True, uid=ident)
        )
        if len(keys) != 1:
            raise CommandError(f"{len(keys)} active keys match {ident!r}; give the key id instead.")
        services.api_key_revoke(key=keys[0])
        self.stdout.write(f"Revoked {keys[0].prefix}…")
