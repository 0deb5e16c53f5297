"""``python manage.py encrypt_secrets``: (re-)encrypt every endpoint secret with the first key.

Run it after setting ``HOOKPOST_ENCRYPTION_KEY`` for the first time (plaintext
rows get encrypted) and after putting a new key first (rows encrypted with an
older key are re-encrypted with the new one, so the old key can then be
dropped). ``--decrypt`` writes the secrets back as plaintext, before removing
encryption altogether. ``--check`` only counts and exits 1 if anything would
change, for deploy scripts.

Rows are rewritten in batches, each in its own short transaction; the
command is idempotent and safe to run while workers deliver (a secret is read
whole or not at all).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction

from webhooks import encryption
from webhooks.models import EndpointSecret

BATCH = 500


class Command(BaseCommand):
    help = "Encrypt endpoint secrets with the first HOOKPOST_ENCRYPTION_KEY (re-encrypting old ones)."

    def add_arguments(self, parser: CommandParser) -> None:
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--decrypt", action="store_true", help="Store every secret as plaintext again.")
        mode.add_argument("--check", action="store_true", help="Only report; exit 1 if plaintext rows exist.")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["decrypt"] and not encryption.enabled():
            raise CommandError("HOOKPOST_ENCRYPTION_KEY is not set: there is no key to encrypt with.")
        plaintext, encrypted = _count_stored()
        if options["check"]:
            self.stdout.write(f"{encrypted} encrypted, {plaintext} plaintext endpoint secrets")
            if plaintext:
                raise CommandError("Some endpoint secrets are stored in plaintext; run encrypt_secrets.")
            return
        rewritten = 0
        last_pk = 0
        while True:
            with transaction.atomic():
                rows = list(
                    EndpointSecret.objects.select_for_update()
                    .filter(pk__gt=last_pk)
                    .order_by("pk")
                    .values_list("pk", "secret")[:BATCH]
                )
                if not rows:
                    break
                for pk, secret in rows:  # the field decrypted ``secret`` with whichever key made it
                    stored = secret if options["decrypt"] else encryption.reencrypt(secret)
                    _write_stored(pk, stored)
                rewritten += len(rows)
                last_pk = rows[-1][0]
        verb = "Decrypted" if options["decrypt"] else "Encrypted"
        self.stdout.write(self.style.SUCCESS(f"{verb} {rewritten} endpoint secrets."))


def _count_stored() -> tuple[int, int]:
    """(plaintext, encrypted) rows, from the raw column."""
    table = EndpointSecret._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*) FILTER (WHERE secret LIKE %s), COUNT(*) FROM {table}",
            [encryption.MARKER + "%"],
        )
        encrypted, total = cursor.fetchone()
    return int(total) - int(encrypted), int(encrypted)


def _write_stored(pk: int, stored: str) -> None:
    """Write the column as given, bypassing the field's own encryption."""
    table = EndpointSecret._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET secret = %s WHERE id = %s", [stored, pk])
