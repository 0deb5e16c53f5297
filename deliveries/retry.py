"""The retry policy: what an attempt's result means and when to try again.

One place classifies every outcome (Sentry's lesson), so the engine never
guesses from scattered ``try/except``:

- 2xx -> SUCCEEDED; anything else, including 3xx (redirects are not
  followed), is a failure;
- 410 Gone -> GONE: the receiver asks us to stop; the endpoint is disabled;
- a refused target (address policy) -> RETRY like any failure, because DNS
  or the tenant's configuration may change; its reason is recorded;
- other failures -> RETRY after the schedule's next delay (with +-jitter), or
  EXHAUSTED once the schedule is used up.

``Retry-After`` on 429/503 can push the next attempt later (never sooner),
up to ``HOOKPOST_RETRY_AFTER_MAX_SECONDS``.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from django.conf import settings

from config.numbers import NumberRejected, parse_int


class Verdict(enum.Enum):
    SUCCEEDED = "succeeded"
    RETRY = "retry"
    EXHAUSTED = "exhausted"
    GONE = "gone"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    delay_seconds: float | None = None  # for RETRY


def schedule_for(endpoint_schedule: Sequence[int] | None) -> list[int]:
    """The delays after attempts 1, 2, …: the endpoint's override or the default."""
    return list(endpoint_schedule) if endpoint_schedule else list(settings.HOOKPOST_RETRY_SCHEDULE)


def decide(
    *,
    status: int | None,
    attempt_number: int,
    schedule: Sequence[int],
    retry_after: str | None = None,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> Decision:
    """Classify attempt ``attempt_number`` (1-based) that got ``status`` (None = no response)."""
    if status is not None and 200 <= status < 300:
        return Decision(Verdict.SUCCEEDED)
    if status == 410:
        return Decision(Verdict.GONE)
    if attempt_number > len(schedule):
        return Decision(Verdict.EXHAUSTED)
    delay = jittered(schedule[attempt_number - 1], rng)
    if status in (429, 503) and retry_after:
        asked = parse_retry_after(retry_after, now)
        if asked is not None:
            delay = max(delay, asked)
    return Decision(Verdict.RETRY, delay)


def jittered(seconds: float, rng: random.Random | None = None) -> float:
    """``seconds`` +- ``HOOKPOST_RETRY_JITTER`` (a fraction), so retries of many
    deliveries that failed together do not hit the receiver together again."""
    spread = settings.HOOKPOST_RETRY_JITTER
    factor = (rng or random).uniform(1 - spread, 1 + spread)
    return max(seconds * factor, 0.0)


def parse_retry_after(value: str, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` value asks for, delta-seconds or an HTTP date,
    at most ``HOOKPOST_RETRY_AFTER_MAX_SECONDS``; None when it is neither."""
    cap = settings.HOOKPOST_RETRY_AFTER_MAX_SECONDS
    value = value.strip(" \t")  # optional whitespace around an HTTP field value
    try:
        return float(parse_int(value, minimum=0, maximum=cap, saturate=True))
    except NumberRejected:
        pass
    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:  # "-0000": the sender does not know its zone
            return None
        seconds = (when - (now or datetime.now(UTC))) / timedelta(seconds=1)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return min(max(seconds, 0.0), float(cap))
