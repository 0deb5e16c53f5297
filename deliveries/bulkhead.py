"""Bulkheads: how many worker slots one endpoint, and failing endpoints together, may hold.

Two compartments, both checked before an attempt goes out:

- **Per endpoint, across the fleet** (Redis): at most the endpoint's cap of
  requests in flight to it from all workers together (its ``max_in_flight``,
  else ``HOOKPOST_ENDPOINT_MAX_IN_FLIGHT``; ``webhooks.selectors.endpoint_max_in_flight``),
  so one slow receiver holds at most its share of the slots and is not buried
  under parallel requests. Each holder is a member of a sorted set scored by
  its lease's end, so a worker killed mid-request frees its place when the
  lease ends instead of leaking it. ``acquire`` is given the cap and stores it
  beside the holders, with their expiry, in the same script: the looks that
  know only the endpoint's uid (``place_wait``, ``wait_in_line``) read it from
  there, and fall back to the setting once it has lapsed.
- **Slowly failing endpoints, per worker** (in process): endpoints whose
  failures since their last success include slow ones (timeouts: a receiver
  that hangs) may together hold at most ``HOOKPOST_DEGRADED_WORKER_SHARE`` of
  this worker's pool. However many endpoints hang until their timeout, the
  rest of the pool keeps serving the healthy ones while the breakers collect
  the failures that open them. Endpoints that fail fast (refused connections,
  quick 5xx) hold a slot for milliseconds and are left out: making them wait
  for slots would only delay the failures that open their circuits.

A delivery over either cap is deferred briefly (``HOOKPOST_BULKHEAD_RETRY_SECONDS``,
with jitter) without spending an attempt, and its thread is free at once.
Over the per-endpoint cap, a batch also waits in the endpoint's line
(``wait_in_line``): the batch that frees a place sends the first in line on
at once (``next_in_line``), so a busy endpoint's backlog drains at its cap
instead of stalling until the deferrals end. A batch that finds every place
taken by a look (``place_wait``) joins the line before it is even claimed. The
line is only a shortcut:
a lost entry (Redis flushed, a holder killed) leaves the deferral, after
which the scheduler hands the deliveries out as usual.

Why hand-written: a bulkhead is a counting semaphore; the per-endpoint one
must be shared by processes on many machines and survive a holder's death,
which is a dozen lines of Lua, and the per-worker one is a
``threading.BoundedSemaphore``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import cast

import redis
from django.conf import settings

from deliveries import shared_state

logger = logging.getLogger(__name__)

# KEYS[1] sorted set of holders scored by lease end (ms), KEYS[2] the cap last given,
# KEYS[3] the endpoint's line. ARGV: holder, cap, lease ms, places wanted. -> {n, left}:
# n places taken (members holder:1..holder:n) and left places still free, counted only
# while someone waits in the line (0 otherwise), or {0, ms until the earliest lease ends}
# The cap key lives as long as the holders set (never shortened: a holder with a
# longer lease may be in it), so the looks below see the cap the holders took under.
_ACQUIRE = shared_state.LuaScript(
    shared_state.LUA_NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local keep = math.max(redis.call('PTTL', KEYS[1]), tonumber(ARGV[3]) + 1000)
redis.call('SET', KEYS[2], ARGV[2], 'PX', keep)
local free = tonumber(ARGV[2]) - redis.call('ZCARD', KEYS[1])
if free <= 0 then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tonumber(first[2]) - now}
end
local take = math.min(free, tonumber(ARGV[4]))
for i = 1, take do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1] .. ':' .. i)
end
redis.call('PEXPIRE', KEYS[1], keep)
if redis.call('LLEN', KEYS[3]) == 0 then
  return {take, 0}
end
return {take, free - take}
"""
)

# Lua prelude: ``live(key)``, the places held in the holders set ``key`` whose lease
# has not ended (holders are scored by lease end, as _ACQUIRE writes them), and
# ``cap_of(key, default)``, the cap _ACQUIRE stored at ``key``, else ``default``.
_LIVE = (
    shared_state.LUA_NOW
    + """
local function live(key)
  return redis.call('ZCOUNT', key, '(' .. now, '+inf')
end
local function cap_of(key, default)
  return tonumber(redis.call('GET', key) or '') or tonumber(default)
end
"""
)


def _keys(endpoint_uid: str) -> tuple[str, str]:
    """The endpoint's holders set and the key of the cap they took their places under."""
    return shared_state.key("inflight", endpoint_uid), shared_state.key("inflight", endpoint_uid, "cap")


_worker_lock = threading.Lock()
_slow_slots: threading.BoundedSemaphore | None = None
_slow_size = 0
# When this process's slow compartment refused an attempt (monotonic seconds),
# to estimate the crowd waiting for it.
_slow_refusals: deque[float] = deque()
_CROWD_WINDOW_SECONDS = 10.0


def configure_worker(concurrency: int) -> None:
    """Size this process's slow-endpoint compartment from the batches it may have in
    flight (``concurrency``: its ``HOOKPOST_WORKER_MAX_IN_FLIGHT``).

    Called from the Celery ``worker_init`` signal (``config.celery``). Outside
    a worker (web, shell, tests) the compartment is unlimited.
    """
    global _slow_slots, _slow_size
    with _worker_lock:
        _slow_refusals.clear()
        if concurrency <= 0:
            _slow_slots, _slow_size = None, 0
            return
        _slow_size = max(1, min(int(concurrency * settings.HOOKPOST_DEGRADED_WORKER_SHARE), concurrency))
        _slow_slots = threading.BoundedSemaphore(_slow_size)
    logger.info("slowly failing endpoints may hold %d of this worker's %d places", _slow_size, concurrency)


@dataclass(frozen=True)
class Refused:
    """No place: ``compartment`` is ``slow`` (this worker's share for slowly
    failing endpoints) or ``endpoint`` (the fleet-wide cap); ask again after
    ``wait_seconds`` (jittered)."""

    compartment: str
    wait_seconds: float


@dataclass
class Hold:
    """Places taken for one batch: ``count`` requests may be in flight at once under it;
    ``release()`` gives them back (idempotent)."""

    count: int = 1
    left: int = 0  # places still free at the endpoint once these were taken, if its line waits
    endpoint_key: str | None = None
    holder: str = ""
    local: threading.BoundedSemaphore | None = None
    _released: bool = field(default=False, repr=False)

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        if self.local is not None:
            self.local.release()
        if self.endpoint_key is not None:
            try:
                members = [f"{self.holder}:{i}" for i in range(1, self.count + 1)]
                shared_state.client().zrem(self.endpoint_key, *members)
            except redis.RedisError:
                logger.warning("could not release in-flight places; they lapse with their lease")


def acquire(
    *,
    endpoint_uid: str,
    slow: bool,
    lease_seconds: float,
    timeout_seconds: float,
    max_in_flight: int | None = None,
    wanted: int = 1,
) -> Hold | Refused:
    """Take up to ``wanted`` places (at least one) for a batch to ``endpoint_uid``, or say
    how long to wait for one. The hold's ``count`` is how many requests the batch may
    have in flight at once: the places free under the cap, or ``wanted`` without one.

    ``slow``: the endpoint has been failing slowly, so the attempt also needs
    a place in this worker's slow-endpoint compartment. ``lease_seconds``
    bounds how long the fleet-wide place is held if this process dies without
    releasing it; ``timeout_seconds`` is how long the endpoint's attempts may
    take. ``max_in_flight`` is the endpoint's fleet-wide cap (None: the
    setting; 0 or less: no cap). Fails open on the fleet-wide cap when Redis
    is unavailable.
    """
    wanted = max(1, wanted)
    hold = Hold(count=wanted)
    slots = _slow_slots
    if slow and slots is not None:
        if not slots.acquire(blocking=False):
            return Refused("slow", _slow_wait(timeout_seconds))
        hold.local = slots
    cap = settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT if max_in_flight is None else max_in_flight
    if cap > 0:
        key, cap_key = _keys(endpoint_uid)
        holder = uuid.uuid4().hex
        hold.count = min(wanted, cap)
        try:
            taken, waited_or_left = cast(
                "list[int]",
                _ACQUIRE(
                    [key, cap_key, shared_state.key("waiting", endpoint_uid)],
                    [holder, cap, int(lease_seconds * 1000), hold.count],
                ),
            )
        except redis.RedisError:
            logger.warning("in-flight state unavailable for %s; letting the attempt through", endpoint_uid)
            return hold
        if not taken:
            hold.release()
            return Refused("endpoint", line_wait(waited_or_left / 1000))
        hold.endpoint_key, hold.holder, hold.count = key, holder, int(taken)
        hold.left = int(waited_or_left)
    return hold


def line_wait(first_lease_ends: float) -> float:
    """How long a batch refused by a full endpoint waits in its line (jittered), given
    the seconds until the earliest place's lease ends.

    Until then no place frees except by a batch finishing, and a finishing
    batch sends the first in line on at once (``next_in_line``); the lease
    only bounds the wait when nobody does (a holder killed, the line lost).
    A shorter wait would only hand the batch back to the scheduler to be
    refused again: for a receiver that hangs, a claim, a task and a refusal
    every second for each batch in its line.
    """
    base = max(settings.HOOKPOST_BULKHEAD_RETRY_SECONDS, 0.05)
    return max(first_lease_ends, base) + random.uniform(0, base)


# KEYS[1] holders and KEYS[3] their cap (as in _ACQUIRE), KEYS[2] the endpoint's
# breaker (deliveries.breaker). ARGV: the cap when none is stored. -> ms until the
# earliest place's lease ends when every place is held now and the breaker is
# closed with no slow failures, else -1
_FULL = shared_state.LuaScript(
    _LIVE
    + """
local cap = cap_of(KEYS[3], ARGV[1])
if cap <= 0 then
  return -1
end
local b = redis.call('HMGET', KEYS[2], 'state', 'slow')
if (b[1] and b[1] ~= 'closed') or tonumber(b[2] or '0') > 0 then
  return -1
end
if live(KEYS[1]) >= cap then
  local first = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  return math.max(tonumber(first[2]) - now, 0)
end
return -1
"""
)


def place_wait(*, endpoint_uid: str) -> float | None:
    """How long a batch for the endpoint should wait in its line (``line_wait``) when
    every place is held now, by a look that takes nothing; None when one may be free.

    Lets a batch join the endpoint's line before it claims anything. Only a
    look: ``acquire`` still decides for a batch that goes on. The cap is the
    one the last ``acquire`` for the endpoint was given, else the setting.
    None when the endpoint has no cap or Redis fails, and when its breaker is
    not closed or counts slow failures: admission asks the breaker and the slow
    compartment first, and their answers (long deferrals) must not turn into
    the line's.
    """
    holders, cap_key = _keys(endpoint_uid)
    keys = [holders, shared_state.key("breaker", endpoint_uid), cap_key]
    try:
        first_lease_ends_ms = cast(int, _FULL(keys, [settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT]))
    except redis.RedisError:
        return None
    return None if first_lease_ends_ms < 0 else line_wait(first_lease_ends_ms / 1000)


def _slow_wait(timeout_seconds: float) -> float:
    """The wait for an attempt the slow compartment refused.

    Each place serves about one attempt per ``timeout_seconds`` (a hanging
    receiver holds it that long), so a crowd of ``n`` waiting for ``slots``
    places needs about ``n / slots`` timeouts: spread the crowd over that.
    Asking sooner would only churn claims; the crowd is estimated from this
    process's recent refusals.
    """
    now = time.monotonic()
    with _worker_lock:
        _slow_refusals.append(now)
        while _slow_refusals and _slow_refusals[0] < now - _CROWD_WINDOW_SECONDS:
            _slow_refusals.popleft()
        crowd, slots = len(_slow_refusals), max(_slow_size, 1)
    base = max(timeout_seconds, settings.HOOKPOST_BULKHEAD_RETRY_SECONDS, 0.05)
    return base * (1 + random.uniform(0, max(1.0, crowd / slots)))


def in_flight(*, endpoint_uid: str) -> int:
    """Live places held for the endpoint across the fleet (for tests and display)."""
    key = shared_state.key("inflight", endpoint_uid)
    client = shared_state.client()
    seconds, micros = cast("tuple[int, int]", client.time())
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    return cast(int, client.zcount(key, now_ms, "+inf"))


# Entries kept in one endpoint's line, at most.
_LINE_MAX = 100


# KEYS[1] the endpoint's line, KEYS[2] its holders and KEYS[3] their cap (as in
# _ACQUIRE). ARGV: entry, entries kept at most, ms to keep the line, the cap when none
# is stored. -> 1 when a place is free as the entry joins, else 0
_JOIN_LINE = shared_state.LuaScript(
    _LIVE
    + """
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
if live(KEYS[2]) < cap_of(KEYS[3], ARGV[4]) then
  return 1
end
return 0
"""
)


def wait_in_line(*, endpoint_uid: str, entry: str, seconds: float) -> bool:
    """Queue ``entry`` (what to send on when a place frees) in the endpoint's line.

    ``seconds``: how long the entry means anything (its deliveries' deferral);
    the line is dropped when nobody has joined it for that long. At most
    ``_LINE_MAX`` entries are kept: an endpoint that stays full keeps only the
    newest, and the dropped ones end as plain deferrals.

    True when a place is free as the entry joins (under the cap the last
    ``acquire`` was given, else the setting): a place freed while the
    entry was on its way may have found the line empty, so the caller sends
    the line on itself (``next_in_line``). The holder that freed it may yet
    send the line on too: the second taker is refused and joins again.
    Trouble with Redis is logged only (False): the deferral still ends.
    """
    holders, cap_key = _keys(endpoint_uid)
    keys = [shared_state.key("waiting", endpoint_uid), holders, cap_key]
    args: list[str | int | float] = [
        entry,
        _LINE_MAX,
        int(seconds * 1000) + 1000,
        settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT,
    ]
    try:
        return bool(_JOIN_LINE(keys, args))
    except redis.RedisError:
        logger.warning("could not queue for a place at %s; the deferral will end instead", endpoint_uid)
        return False


def next_in_line(*, endpoint_uid: str) -> str | None:
    """Take the first entry of the endpoint's line, if any (None also when Redis fails)."""
    try:
        entry = cast("bytes | None", shared_state.client().lpop(shared_state.key("waiting", endpoint_uid)))
    except redis.RedisError:
        logger.warning("could not read the line for %s; its deferrals will end instead", endpoint_uid)
        return None
    return entry.decode() if isinstance(entry, bytes) else entry
