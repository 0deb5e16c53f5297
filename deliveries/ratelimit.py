"""Per-endpoint rate limits: a token bucket in Redis, taken atomically by Lua.

An endpoint's ``rate_limit`` is requests per second. Its bucket holds
``rate * HOOKPOST_RATE_LIMIT_BURST_SECONDS`` tokens (at least one) and refills
continuously; every worker takes from the same bucket, so the limit holds for
the whole fleet.

Work over the limit is deferred, never dropped, and never spends an attempt.
Rather than answer a bare "no", the script *reserves* the caller the next
free slot: the bucket goes into debt (negative tokens), the caller learns how
long until its token exists, and the reservation is remembered under the
delivery's id. The delivery is deferred to exactly that moment and, when it
comes back, goes through on its reservation without taking a second token.
Without reservations every deferred delivery would return at the same
next-token moment and all but one would be deferred again: a herd of claims
that grows with the backlog. Reservations reach at most
``HOOKPOST_RATE_LIMIT_MAX_RESERVE_SECONDS`` ahead; a delivery beyond that is
deferred that long without one and asks again, so a huge backlog cannot
mortgage the bucket for hours.

Why hand-written: Python rate-limit libraries (``limits``: fixed, moving and
sliding windows; ``django-ratelimit``: per-request fixed windows) answer
"allowed now or not"; none hands out a future slot that a deferred job can
hold, which is what keeps a backlog from churning. Redis's own clock (``TIME``)
times the bucket, so workers' clock skew does not matter.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import cast

import redis
from django.conf import settings

from deliveries import shared_state

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Take:
    """``allowed``: send now. Otherwise wait ``wait_seconds`` (a slot is reserved if ``reserved``)."""

    allowed: bool
    wait_seconds: float = 0.0
    reserved: bool = False


# KEYS[1] bucket hash {tokens, ts}, KEYS[2] this delivery's reservation.
# ARGV: rate per second, capacity, max reserve ms, reservation grace ms.
# -> {allowed (1|0), wait_ms, reserved (1|0)}
_TAKE = shared_state.LuaScript(
    shared_state.LUA_NOW
    + """
if redis.call('DEL', KEYS[2]) == 1 then
  return {1, 0, 0}  -- the slot this delivery reserved earlier
end
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local h = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(h[1] or ARGV[2])
local ts = tonumber(h[2] or now)
tokens = math.min(capacity, tokens + math.max(now - ts, 0) * rate / 1000)
-- Keep the bucket while it refills (or while reservations are outstanding).
local ttl = math.ceil((capacity - tokens + 1) * 1000 / rate) + tonumber(ARGV[3]) + 1000
if tokens >= 1 then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - 1), 'ts', now)
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {1, 0, 0}
end
local wait = math.ceil((1 - tokens) * 1000 / rate)
if wait > tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {0, tonumber(ARGV[3]), 0}
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - 1), 'ts', now)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('SET', KEYS[2], '1', 'PX', wait + tonumber(ARGV[4]))
return {0, wait, 1}
"""
)

# A reservation outlives its slot by this much: the scheduler's tick and a
# busy queue may bring the delivery back a little late.
_RESERVATION_GRACE_MS = 60_000


def capacity_of(rate: int) -> float:
    """Tokens the bucket of an endpoint limited to ``rate``/s holds (its burst)."""
    return max(1.0, rate * settings.HOOKPOST_RATE_LIMIT_BURST_SECONDS)


def take(*, endpoint_uid: str, rate: int, delivery_uid: str) -> Take:
    """Take one token for ``delivery_uid`` from the endpoint's bucket, or reserve a later one.

    Fails open (allowed) when Redis is unavailable.
    """
    keys = [
        shared_state.key("ratelimit", endpoint_uid),
        shared_state.key("ratelimit", endpoint_uid, "held", delivery_uid),
    ]
    args: list[str | int | float] = [
        rate,
        capacity_of(rate),
        settings.HOOKPOST_RATE_LIMIT_MAX_RESERVE_SECONDS * 1000,
        _RESERVATION_GRACE_MS,
    ]
    try:
        allowed, wait_ms, reserved = cast("list[int]", _TAKE(keys, args))
    except redis.RedisError:
        logger.warning("rate limit state unavailable for %s; letting the attempt through", endpoint_uid)
        return Take(allowed=True)
    return Take(allowed=bool(allowed), wait_seconds=int(wait_ms) / 1000, reserved=bool(reserved))


def reset(*, endpoint_uid: str) -> None:
    """Refill the endpoint's bucket (outstanding reservations still go through)."""
    try:
        shared_state.client().delete(shared_state.key("ratelimit", endpoint_uid))
    except redis.RedisError:
        logger.warning("could not reset the rate limit of %s", endpoint_uid)
