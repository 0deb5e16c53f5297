"""An endpoint's own in-flight cap (``max_in_flight``) end to end: a real worker,
Redis, PostgreSQL and a slow HTTP receiver that counts the requests it holds
open at once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deliveries.models import Delivery
from tests.e2e.helpers import assert_ledger, publish, register_endpoint
from tests.e2e.receiver import Receiver, Reply

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Long enough that the deliveries of one endpoint overlap whenever its cap allows.
ANSWER_SECONDS = 0.4


@pytest.fixture(autouse=True)
def _release_hanging_handlers(receiver: Receiver) -> Iterator[None]:
    yield
    receiver.release.set()


def test_a_capped_endpoint_never_has_more_than_its_cap_in_flight_while_a_default_one_has_more(
    make_worker, receiver: Receiver, e2e_settings, make_client, tenant, event_type, capsys
):
    # given a slow receiver behind two endpoints: one capped at 2, one on the platform default (6)
    api = make_client(tenant).client
    receiver.script("/capped", Reply(200, delay=ANSWER_SECONDS))
    receiver.script("/default", Reply(200, delay=ANSWER_SECONDS))
    capped = register_endpoint(api, tenant, receiver, "/capped", max_in_flight=2)
    default = register_endpoint(api, tenant, receiver, "/default")
    make_worker(concurrency=8, extra_env={"HOOKPOST_ENDPOINT_MAX_IN_FLIGHT": "6"})

    # when 16 messages are published at once, each for both endpoints
    messages = [publish(api, tenant, event_type, {"n": n}) for n in range(16)]

    # then every delivery arrives
    assert_ledger(receiver, messages, [capped, default], timeout=60)
    peaks = {path: receiver.peak_open(path) for path in ("/capped", "/default")}
    with capsys.disabled():
        print(f"\nmax_in_flight: most requests open at once at the receiver {peaks}")
    # and the capped endpoint never had more than 2 requests open at once (and used both places)
    assert peaks["/capped"] == 2, peaks
    # while the endpoint on the default cap had more at once, up to the default
    assert 2 < peaks["/default"] <= 6, peaks
    # and waiting for a place spent no attempt
    attempts = Delivery.objects.filter(message__uid__in=messages).values_list("attempt_count", flat=True)
    assert set(attempts) == {1}
