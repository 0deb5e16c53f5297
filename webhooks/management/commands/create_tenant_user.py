"""``python manage.py create_tenant_user <username> --tenant acme [--tenant globex] [--role viewer]``

Creates a staff user who sees only the given tenants in the admin (or adds
memberships to an existing one). Without ``--password`` a new user gets a
random password, printed once; ``--password-stdin`` reads it from standard input.
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from webhooks.errors import ServiceError
from webhooks.models import Membership, Tenant
from webhooks.tenant_users import tenant_user_create


class Command(BaseCommand):
    help = "Create a tenant user for the admin (staff, scoped to the given tenants)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--tenant", action="append", required=True, help="Tenant uid; repeat for several")
        parser.add_argument("--role", choices=Membership.Role.values, default=Membership.Role.ADMIN)
        parser.add_argument("--email", default="")
        secret = parser.add_mutually_exclusive_group()
        secret.add_argument(
            "--password", default=None, help="Prefer --password-stdin: argv is visible to others"
        )
        secret.add_argument("--password-stdin", action="store_true", help="Read the password from stdin")

    def handle(self, *args: Any, **options: Any) -> None:
        uids = options["tenant"]
        tenants = list(Tenant.objects.filter(uid__in=uids))
        missing = sorted(set(uids) - {t.uid for t in tenants})
        if missing:
            raise CommandError(f"Unknown tenant(s): {', '.join(missing)}")
        password = options["password"]
        if options["password_stdin"]:
            password = sys.stdin.readline().rstrip("\n")
            if not password:
                raise CommandError("No password on standard input.")
        try:
            result = tenant_user_create(
                username=options["username"],
                tenants=tenants,
                role=options["role"],
                email=options["email"],
                password=password,
            )
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        verb = "Created" if result.created else "Updated"
        scope = f"{options['role']} of {', '.join(sorted(uids))}"
        self.stdout.write(f"{verb} tenant user {result.user.get_username()} ({scope})")
        if result.password:
            self.stdout.write(f"Password (shown once): {result.password}")
