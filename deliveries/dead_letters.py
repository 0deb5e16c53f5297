"""Dead letters: deliveries whose retries are exhausted (status ``dead``).

They are listed in the admin (the ``DeadLetter`` proxy model) and either
replayed (``deliveries.replay``) or discarded here. Discarding is how a tenant
says "this will never be delivered and I do not want it back": the dead
delivery and its attempts are deleted, the message and its deliveries to
other endpoints stay, and the admin records who discarded what.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from deliveries.models import Delivery
from webhooks.models import Tenant


def dead_letters_discard(*, tenant: Tenant, deliveries: Iterable[Delivery]) -> int:
    """Delete those of ``deliveries`` that belong to ``tenant`` and are still dead.

    Returns how many were discarded. Other tenants' ids and deliveries that
    are no longer dead (replayed meanwhile) are left alone, so a stale or
    forged selection changes nothing it should not.
    """
    ids = [d.pk for d in deliveries]
    with transaction.atomic():
        doomed = Delivery.objects.select_for_update().filter(
            tenant=tenant, pk__in=ids, status=Delivery.Status.DEAD
        )
        # Lock first, so a replay that moves a row out of ``dead`` concurrently
        # either happens before (row not deleted) or waits for us.
        doomed_ids = list(doomed.values_list("pk", flat=True))
        if not doomed_ids:
            return 0
        Delivery.objects.filter(pk__in=doomed_ids).delete()
    return len(doomed_ids)
