"""The retry policy's classification and delays."""
from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from deliveries.retry import Verdict, decide, jittered, parse_retry_after, schedule_for

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
