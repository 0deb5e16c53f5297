"""The retry policy's classification and delays."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from deliveries import engine, outbound
from deliveries.models import Attempt, Delivery
from deliveries.retry import Verdict, decide, jittered, parse_retry_after, schedule_for
from deliveries.transport import TransportResult
from tests.factories import EndpointFactory
from tests.unit.protection_helpers import leased_batch

SCHEDULE = [5, 300, 1800]


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.HOOKPOST_RETRY_JITTER = 0.2
    settings.HOOKPOST_RETRY_AFTER_MAX_SECONDS = 3600
    settings.HOOKPOST_RETRY_SCHEDULE = [5, 300, 1800, 7200, 18000, 36000, 36000]


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_2xx_succeeds(status):
    assert decide(status=status, attempt_number=1, schedule=SCHEDULE).verdict is Verdict.SUCCEEDED


@pytest.mark.parametrize("status", [None, 301, 302, 307, 400, 404, 429, 500, 503])
def test_everything_else_is_retried_with_the_schedule_delay(status):
    decision = decide(status=status, attempt_number=2, schedule=SCHEDULE)

    assert decision.verdict is Verdict.RETRY
    assert 300 * 0.8 <= decision.delay_seconds <= 300 * 1.2


def test_gone_stops_at_once():
    assert decide(status=410, attempt_number=1, schedule=SCHEDULE).verdict is Verdict.GONE


def test_exhausted_after_the_last_delay():
    assert decide(status=500, attempt_number=3, schedule=SCHEDULE).verdict is Verdict.RETRY
    assert decide(status=500, attempt_number=4, schedule=SCHEDULE).verdict is Verdict.EXHAUSTED


def test_default_schedule_is_eight_attempts_over_about_28_hours():
    schedule = schedule_for(None)

    assert len(schedule) + 1 == 8
    assert 27 * 3600 < sum(schedule) < 29 * 3600
    assert schedule_for([1, 2]) == [1, 2]


def test_jitter_spreads_within_twenty_percent():
    rng = random.Random(7)
    delays = [jittered(100, rng) for _ in range(500)]

    assert min(delays) >= 80 and max(delays) <= 120
    assert max(delays) - min(delays) > 30  # really spread, not a constant


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_pushes_later_but_never_sooner(status):
    later = decide(status=status, attempt_number=1, schedule=SCHEDULE, retry_after="120")
    sooner = decide(status=status, attempt_number=2, schedule=SCHEDULE, retry_after="1")

    assert later.delay_seconds == 120
    assert sooner.delay_seconds >= 240


def test_retry_after_is_capped_and_ignored_on_other_statuses():
    capped = decide(status=429, attempt_number=1, schedule=SCHEDULE, retry_after="999999")
    ignored = decide(status=500, attempt_number=1, schedule=SCHEDULE, retry_after="120")

    assert capped.delay_seconds == 3600
    assert ignored.delay_seconds <= 6


def test_retry_after_http_date_and_garbage():
    now = datetime(2026, 1, 1, tzinfo=UTC)

    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90
    assert parse_retry_after(format_datetime(now - timedelta(seconds=90), usegmt=True), now) == 0
    assert parse_retry_after("soon", now) is None


@pytest.mark.parametrize(
    "value",
    ["²", "٣", "१२०", "12²", "+120", "-5", "1_20", "1.5", "1e3", "inf", "nan", "12\x00", "", "  "],
)
def test_retry_after_that_is_not_ascii_seconds_or_a_date_is_ignored(value):
    now = datetime(2026, 1, 1, tzinfo=UTC)

    assert parse_retry_after(value, now) is None
    decision = decide(status=429, attempt_number=1, schedule=SCHEDULE, retry_after=value, now=now)
    assert decision.verdict is Verdict.RETRY and decision.delay_seconds <= 6


@pytest.mark.parametrize("value", ["3601", "9" * 25, "9" * 5000])
def test_huge_retry_after_is_capped_not_refused(value):
    assert parse_retry_after(value) == 3600
    assert decide(status=503, attempt_number=1, schedule=SCHEDULE, retry_after=value).delay_seconds == 3600


def test_retry_after_allows_surrounding_whitespace_and_leading_zeros():
    assert parse_retry_after(" \t0120 ") == 120


def test_a_far_future_or_zoneless_http_date_is_capped_or_ignored():
    now = datetime(2026, 1, 1, tzinfo=UTC)

    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now) == 3600
    assert parse_retry_after("Thu, 01 Jan 2026 00:01:00 -0000", now) is None
    assert parse_retry_after("Thu, 01 Jan 2026 00:01:00 +0000", now) == 60


# Header values a receiver could send: digits of other scripts, huge numbers,
# dates with odd fields, control characters.
RETRY_AFTER_VALUES = st.one_of(
    st.text(max_size=60),
    st.text(st.sampled_from(list("0123456789²³٣०𝟡 \t-+.,:eE\x00")), max_size=40),  # noqa: RUF001 (other scripts' digits on purpose)
    st.integers(min_value=-(10**30), max_value=10**400).map(str),
    st.datetimes(timezones=st.timezones()).map(lambda d: format_datetime(d)),
    st.from_regex(
        r"[A-Za-z]{0,4}, ?[0-9]{1,4} [A-Za-z]{3} -?[0-9]{1,6} "
        r"[0-9]{1,3}:[0-9]{1,3}:[0-9]{1,3} [-+A-Z0-9]{0,6}",
        fullmatch=True,
    ),
)


@settings(max_examples=300, deadline=None)
@given(value=RETRY_AFTER_VALUES, status=st.sampled_from([429, 503]))
def test_property_any_retry_after_gives_a_bounded_delay_and_no_exception(value, status):
    now = datetime(2026, 1, 1, tzinfo=UTC)

    asked = parse_retry_after(value, now)
    decision = decide(status=status, attempt_number=1, schedule=SCHEDULE, retry_after=value, now=now)

    assert asked is None or 0 <= asked <= 3600
    assert decision.verdict is Verdict.RETRY
    assert 0 <= decision.delay_seconds <= 3600


class _Answering429:
    """A transport stub: every request gets 429 with the given ``Retry-After``."""

    def __init__(self, retry_after: str) -> None:
        self.result = TransportResult(
            status=429, headers={"retry-after": retry_after}, body=b"slow down", connected=True
        )
        self.sent = 0

    async def post(self, *args: Any, **kwargs: Any) -> TransportResult:
        self.sent += 1
        return self.result


@pytest.mark.django_db
@pytest.mark.parametrize(
    "retry_after, delay",
    [("²", 60), ("١٢٠", 60), ("inf", 60), ("9" * 5000, 3600), ("120", 120)],
    ids=["superscript", "arabic_indic", "inf", "huge", "plain"],
)
def test_a_429_with_any_retry_after_is_one_recorded_attempt_and_a_retry(monkeypatch, retry_after, delay):
    # given an endpoint on a 60 s schedule whose receiver answers 429 with this Retry-After
    transport = _Answering429(retry_after)
    monkeypatch.setattr(outbound, "transport", lambda: transport)
    (delivery,), token = leased_batch(EndpointFactory.create(retry_schedule=[60]), 1)

    # when the engine runs it
    statuses = engine.delivery_run_batch(delivery_ids=[delivery.pk], token=token)

    # then one request, one attempt row, no internal failure, and the retry is
    # the schedule's (or the receiver's readable, capped) delay
    delivery.refresh_from_db()
    assert statuses == {delivery.pk: "failed"} and transport.sent == 1
    assert (delivery.attempt_count, delivery.internal_failures) == (1, 0)
    assert Attempt.objects.get(delivery=delivery).response_status == 429
    wait = (delivery.next_attempt_at - timezone.now()).total_seconds()
    if delay == 60:
        assert 60 * 0.8 - 5 <= wait <= 60 * 1.2
    else:
        assert delay - 5 <= wait <= delay
    assert Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.FAILED).exists()
