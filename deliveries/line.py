"""The endpoint's line: batches refused a place at a full endpoint wait in it
under a lease that lasts until a place must be free (``bulkhead.line_wait``),
and the batch that frees a place sends the first one on.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from datetime import timedelta

from django.utils import timezone

from deliveries import admission, bulkhead, dispatch, leases
from deliveries.deferral import Deferred, announce_deferred, deferred_among
from deliveries.models import Delivery
from webhooks.models import Endpoint

logger = logging.getLogger(__name__)

# How many lapsed entries one freed place skips in an endpoint's line, at most.
_LINE_SKIP_LIMIT = 20


def wait_in_line(
    endpoint: Endpoint, deliveries: list[Delivery], lease: str, *, seconds: float
) -> dict[int, str]:
    """The endpoint has no free place: keep the deliveries due under a short lease and
    queue them in its line; "deferred" each, or "lease_lost".

    The batch that frees the next place sends them on at once
    (``send_on_next_in_line``); a place freed between the refusal and the
    joining is taken up by the joiner (``_join_line``). Should nobody send
    them on (a lost line), the lease ends after ``seconds`` and the
    scheduler hands them out again: the plain deferral. No attempt is spent
    either way.
    """
    token = leases.new_token()
    moved = leases.update_held(
        deliveries, lease, lease_token=token, lease_expires_at=timezone.now() + timedelta(seconds=seconds)
    )
    if moved:
        _join_line(endpoint.uid, moved, token, seconds)
    announce_deferred(deferred_among(deliveries, moved), seconds=seconds, reason=admission.BULKHEAD)
    return {d.pk: ("deferred" if d.pk in moved else "lease_lost") for d in deliveries}


def wait_in_line_unclaimed(
    endpoint_uid: str, delivery_ids: Sequence[int], token: str, *, seconds: float
) -> dict[int, str]:
    """``wait_in_line`` for a batch not yet claimed: its deliveries still due under the
    dispatch lease ``token`` move to a lease of the line's, no row loaded.

    "deferred" for each delivery moved; the others (not due, leased to
    someone else) are left out, as a claim would leave them.
    """
    line_token = leases.new_token()
    now = timezone.now()
    due = leases.due_among(delivery_ids, now).filter(lease_token=token)
    lease_ends = now + timedelta(seconds=seconds)
    moved = leases.update_returning(
        due, ("pk", "tenant_id", "uid"), lease_token=line_token, lease_expires_at=lease_ends
    )
    if moved:
        _join_line(endpoint_uid, [pk for pk, _, _ in moved], line_token, seconds)
    announce_deferred(
        [Deferred(endpoint_uid, tenant_id, uid) for _, tenant_id, uid in moved],
        seconds=seconds,
        reason=admission.BULKHEAD,
    )
    return {pk: "deferred" for pk, _, _ in moved}


def _join_line(endpoint_uid: str, delivery_ids: Iterable[int], token: str, seconds: float) -> None:
    """Queue the deliveries leased under ``token`` for ``seconds`` in the endpoint's line."""
    entry = json.dumps({"ids": sorted(delivery_ids), "token": token, "until": time.time() + seconds})
    if bulkhead.wait_in_line(endpoint_uid=endpoint_uid, entry=entry, seconds=seconds):
        # A place is free although the endpoint was full a moment ago: whoever freed it
        # may have found the line empty, so send the first in line on now.
        send_on_next_in_line(endpoint_uid)


def send_on_next_in_line(endpoint_uid: str, places: int = 1) -> None:
    """``places`` at the endpoint were freed: queue the first batches waiting in its line,
    as many as want that many places (one at least).

    Their claims present the line's lease token, so a batch the scheduler has
    handed out meanwhile (the lease ended) is not sent twice. Trouble is
    logged only: the waiting deliveries' lease ends and the scheduler sends them.
    """
    try:
        wanted, skipped = 0, 0
        while wanted < places and skipped < _LINE_SKIP_LIMIT:
            entry = bulkhead.next_in_line(endpoint_uid=endpoint_uid)
            if entry is None:
                return
            waiting = json.loads(entry)
            # Entries whose lease has ended are the scheduler's now: skip them, so the
            # freed places go to batches still waiting for them.
            if waiting["until"] <= time.time():
                skipped += 1
                continue
            dispatch.enqueue_now(waiting["ids"], waiting["token"])
            wanted += len(waiting["ids"])
    except Exception:
        logger.exception("could not send on the line of %s; its deferrals will end instead", endpoint_uid)
