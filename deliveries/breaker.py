"""Per-endpoint circuit breakers, their state shared by every worker in Redis.

States and transitions (thresholds are ``HOOKPOST_BREAKER_*`` settings):

- ``closed``: attempts go out. A breaker-failure (connection error, timeout,
  TLS or DNS failure, 5xx, 429) counts; ``FAILURE_THRESHOLD`` (5) in a row, or
  at least ``FAILURE_RATE`` (50 %) of at least ``MIN_ATTEMPTS`` (20) attempts in
  the sliding ``WINDOW_SECONDS`` (60), opens the circuit. Any other answer
  (2xx, 3xx, other 4xx) proves the receiver is up and resets the run; those
  4xx are still failed *deliveries* (``deliveries.retry``), just not a reason
  to stop talking to the endpoint.
- ``open`` for a cool-down: ``COOLDOWN_SECONDS`` (30 s), doubled on each
  re-open up to ``MAX_COOLDOWN_SECONDS`` (10 min). A re-open is a failed probe,
  or opening again less than ``MAX_COOLDOWN_SECONDS`` after closing (a
  flapping endpoint keeps its escalation). Nothing is sent; deliveries are
  deferred to the end of the cool-down without spending an attempt.
- ``half_open``: the first caller after the cool-down becomes the one probe,
  across all workers; everyone else is deferred until the probe has answered
  (looking again every ``PROBE_RECHECK_SECONDS``, see ``deliveries.admission``).
  The probe's success (any non-breaker-failure answer) closes the circuit; its
  failure re-opens it. A probe whose worker died is replaced once its lease
  (the endpoint's timeout plus the lease margin) has passed.

Why hand-written: no well-kept library offers a breaker whose state is shared
by processes on many machines with these semantics. pybreaker's
``CircuitRedisStorage`` (danielfm/pybreaker, ``src/pybreaker/__init__.py``)
keeps state, counter and ``opened_at`` in separate keys changed by separate
GET/SET/INCR calls, and guards transitions with a process-local
``threading.RLock``: every process whose timeout check passes sets
``half-open`` and makes its own trial call, so half-open admits as many probes
as there are workers; the counter-then-open check is a read after the INCR,
not one step; and there is no failure-rate window nor an escalating
cool-down. Here each decision is one Lua script (``EVALSHA``), so it is
atomic across workers, and Redis's own clock (``TIME``) times every
transition, so workers' clock skew cannot open or close a circuit early.

Transitions are logged with the endpoint and tenant ids, sent as the
``deliveries.signals.circuit_transitioned`` signal (metrics), and mirrored on
the Endpoint row (``circuit_state``, ``circuit_changed_at``) for the admin and
the health API. A circuit closing after a probe records an
``endpoint.recovered`` operational event.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import redis
from django.conf import settings
from django.db.models import Q

from deliveries import operational, shared_state, signals
from deliveries.transport import TransportResult
from webhooks.models import Endpoint

logger = logging.getLogger(__name__)

CLOSED = Endpoint.CircuitState.CLOSED.value
OPEN = Endpoint.CircuitState.OPEN.value
HALF_OPEN = Endpoint.CircuitState.HALF_OPEN.value

# Error classes of TransportResult that say the receiver could not be reached
# or did not answer in time. "TargetRejected" is our own address policy
# refusing before any connection: it says nothing about the receiver.
_UNREACHABLE = frozenset({"ConnectionError", "Timeout", "TLSError", "DNSError"})
# Idle breaker state expires; an active circuit refreshes it on every write.
_STATE_TTL_SECONDS = 24 * 3600


class Outcome(enum.Enum):
    SUCCESS = "success"  # any answer that is not a breaker-failure
    FAILURE = "failure"  # a breaker-failure
    IGNORED = "ignored"  # no information about the receiver (refused by our policy)


def outcome_of(result: TransportResult) -> Outcome:
    """Classify one attempt's result for the breaker (not for the retry policy)."""
    if result.status is None:
        return Outcome.FAILURE if result.error_class in _UNREACHABLE else Outcome.IGNORED
    if result.status >= 500 or result.status == 429:
        return Outcome.FAILURE
    return Outcome.SUCCESS


def is_slow(result: TransportResult) -> bool:
    """Whether an attempt held its worker long: a timeout, or a failure after
    ``HOOKPOST_SLOW_FAILURE_SECONDS``."""
    return (
        result.error_class == "Timeout" or result.duration_ms >= settings.HOOKPOST_SLOW_FAILURE_SECONDS * 1000
    )


@dataclass(frozen=True)
class Transition:
    from_state: str
    to_state: str
    reason: str
    at: datetime  # Redis clock
    cooldown_seconds: float | None = None  # when opening
    consecutive_failures: int = 0


@dataclass(frozen=True)
class Admission:
    """May an attempt go out now? ``probe`` is set when this attempt is the half-open probe."""

    allowed: bool
    state: str
    retry_in_seconds: float = 0.0  # when denied: until the circuit may half-open / the probe ends
    probe: str | None = None
    slow: bool = False  # the endpoint's failures since its last success include slow ones (timeouts)
    transition: Transition | None = None


@dataclass(frozen=True)
class Snapshot:
    """The shared state of one endpoint's breaker, for display."""

    state: str
    changed_at: datetime | None
    retry_at: datetime | None  # open: when it may half-open
    cooldown_seconds: float | None
    consecutive_failures: int
    window_attempts: int
    window_failures: int


# --- Lua -------------------------------------------------------------------------
# Every script reads Redis's clock itself. Replies are arrays; Lua numbers come
# back as integers (milliseconds).

# KEYS[1] state hash. ARGV: probe token, probe lease ms, state ttl s.
# -> {verdict ('allow'|'deny'|'probe'), state, until_ms, fails, now_ms, from_state, slow failures}
_ADMIT = shared_state.LuaScript(
    shared_state.LUA_NOW
    + """
local h = redis.call('HMGET', KEYS[1], 'state', 'fails', 'open_until', 'probe_until', 'slow')
local state = h[1] or 'closed'
local fails = tonumber(h[2] or '0')
local slow = tonumber(h[5] or '0')
if state == 'closed' then
  return {'allow', state, 0, fails, now, '', slow}
end
if state == 'open' then
  local open_until = tonumber(h[3] or '0')
  if now < open_until then
    return {'deny', state, open_until, fails, now, '', slow}
  end
  -- The cool-down is over: this caller is the one probe.
  local probe_until = now + tonumber(ARGV[2])
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe', ARGV[1], 'probe_until', probe_until,
             'changed_at', now)
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return {'probe', 'half_open', probe_until, fails, now, 'open', slow}
end
local probe_until = tonumber(h[4] or '0')
if now < probe_until then
  return {'deny', state, probe_until, fails, now, '', slow}
end
-- Half-open with no live probe (its worker died, or it was handed back).
probe_until = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'probe', ARGV[1], 'probe_until', probe_until)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {'probe', state, probe_until, fails, now, '', slow}
"""
)

# KEYS[1] state hash, KEYS[2] window hash ('n:<sec>' attempts, 'f:<sec>' failures).
# ARGV: outcome ('failure'|'success'), probe token or '', threshold, min attempts,
#       failure rate, window s, base cool-down ms, max cool-down ms, state ttl s,
#       slow ('1' when a failure took long: a timeout), count (identical outcomes, default 1).
# -> {state, from_state ('' = no transition), fails, cooldown_ms, now_ms, reason}
_RECORD = shared_state.LuaScript(
    shared_state.LUA_NOW
    + """
local failed = ARGV[1] == 'failure'
local window = tonumber(ARGV[6])
local count = tonumber(ARGV[11] or '1')
local sec = math.floor(now / 1000)
local first_this_second = redis.call('HINCRBY', KEYS[2], 'n:' .. sec, count) == count
if failed then redis.call('HINCRBY', KEYS[2], 'f:' .. sec, count) end
redis.call('EXPIRE', KEYS[2], window + 5)

local h = redis.call('HMGET', KEYS[1], 'state', 'fails', 'probe', 'cooldown', 'closed_at', 'slow')
local state = h[1] or 'closed'
local fails = tonumber(h[2] or '0')
local ttl = ARGV[9]
-- Slow failures since the last success: they tell the bulkhead this endpoint
-- holds worker slots while it fails.
if failed and ARGV[10] == '1' then
  redis.call('HINCRBY', KEYS[1], 'slow', 1)
  redis.call('EXPIRE', KEYS[1], ttl)
elseif not failed and tonumber(h[6] or '0') > 0 then
  redis.call('HSET', KEYS[1], 'slow', 0)
end

-- Sum the window, dropping seconds that slid out (at most once a second per
-- endpoint on the success path, so a busy endpoint's hash stays small).
local function window_sums()
  local total, bad = 0, 0
  local oldest = sec - window + 1
  local fields = redis.call('HGETALL', KEYS[2])
  for i = 1, #fields, 2 do
    local kind, at = string.match(fields[i], '^(%a):(%d+)$')
    if tonumber(at) < oldest then
      redis.call('HDEL', KEYS[2], fields[i])
    elseif kind == 'n' then
      total = total + tonumber(fields[i + 1])
    else
      bad = bad + tonumber(fields[i + 1])
    end
  end
  return total, bad
end

local function open(from, reason)
  local base, max = tonumber(ARGV[7]), tonumber(ARGV[8])
  local last = tonumber(h[4] or '0')
  local cooldown = base
  if from == 'half_open' then
    cooldown = math.min(math.max(last, base) * 2, max)
  else
    local closed_at = tonumber(h[5] or '0')
    if last > 0 and closed_at > 0 and now - closed_at < max then
      cooldown = math.min(last * 2, max)
    end
  end
  redis.call('HSET', KEYS[1], 'state', 'open', 'open_until', now + cooldown, 'cooldown', cooldown,
             'changed_at', now, 'fails', fails, 'reason', reason)
  redis.call('HDEL', KEYS[1], 'probe', 'probe_until')
  redis.call('DEL', KEYS[2])
  redis.call('EXPIRE', KEYS[1], ttl)
  return {'open', from, fails, cooldown, now, reason}
end

if state == 'closed' then
  if not failed then
    if fails > 0 then
      redis.call('HSET', KEYS[1], 'fails', 0)
      redis.call('EXPIRE', KEYS[1], ttl)
    end
    if first_this_second then window_sums() end
    return {'closed', '', 0, 0, now, ''}
  end
  fails = redis.call('HINCRBY', KEYS[1], 'fails', count)
  redis.call('EXPIRE', KEYS[1], ttl)
  if fails >= tonumber(ARGV[3]) then
    return open('closed', 'consecutive_failures')
  end
  local total, bad = window_sums()
  if total >= tonumber(ARGV[4]) and bad >= tonumber(ARGV[5]) * total then
    return open('closed', 'failure_rate')
  end
  return {'closed', '', fails, 0, now, ''}
end

if state == 'half_open' and ARGV[2] ~= '' and ARGV[2] == h[3] then
  if failed then
    fails = fails + 1
    return open('half_open', 'probe_failed')
  end
  redis.call('HSET', KEYS[1], 'state', 'closed', 'fails', 0, 'closed_at', now, 'changed_at', now)
  redis.call('HDEL', KEYS[1], 'probe', 'probe_until', 'open_until', 'reason')
  redis.call('DEL', KEYS[2])
  redis.call('EXPIRE', KEYS[1], ttl)
  return {'closed', 'half_open', 0, 0, now, 'probe_succeeded'}
end
-- Open, or half-open and not the probe: a straggler that started before the
-- circuit opened. Its result changes nothing.
return {state, '', fails, 0, now, ''}
"""
)

# KEYS[1] state hash. ARGV: probe token. Hands an unused probe back.
_RELEASE_PROBE = shared_state.LuaScript(
    """
local h = redis.call('HMGET', KEYS[1], 'state', 'probe')
if h[1] == 'half_open' and h[2] == ARGV[1] then
  redis.call('HSET', KEYS[1], 'probe_until', 0)
  redis.call('HDEL', KEYS[1], 'probe')
  return 1
end
return 0
"""
)


def _keys(endpoint: Endpoint) -> list[str]:
    return [_state_key(endpoint.uid), shared_state.key("breaker", endpoint.uid, "window")]


def _state_key(endpoint_uid: str) -> str:
    return shared_state.key("breaker", endpoint_uid)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


# --- Operations ---------------------------------------------------------------------


def admit(endpoint: Endpoint, *, probe_lease_seconds: float) -> Admission:
    """Ask the endpoint's breaker whether one attempt may go out now.

    Closed: allowed. Open before its cool-down ends, or half-open with a live
    probe: denied, with how long to wait. Otherwise this caller becomes the
    probe (``Admission.probe``) for ``probe_lease_seconds``; it must report
    with ``record(..., probe=...)`` or hand the probe back with
    ``release_probe``. Fails open (allowed) when Redis is unavailable.
    """
    token = uuid.uuid4().hex
    try:
        reply = _ADMIT(_keys(endpoint)[:1], [token, int(probe_lease_seconds * 1000), _STATE_TTL_SECONDS])
    except redis.RedisError:
        logger.warning("breaker unavailable for %s; letting the attempt through", endpoint.uid, exc_info=True)
        return Admission(allowed=True, state=CLOSED)
    verdict, state, until_ms, fails, now_ms, from_state, slow_failures = cast("list[Any]", reply)
    verdict, state, from_state = _text(verdict), _text(state), _text(from_state)
    transition = None
    if from_state:
        transition = Transition(from_state, state, "cooldown_elapsed", _at(int(now_ms)), None, int(fails))
        _announce(endpoint, transition)
    slow = int(slow_failures) > 0
    if verdict == "allow":
        return Admission(allowed=True, state=state, slow=slow)
    if verdict == "probe":
        return Admission(allowed=True, state=state, probe=token, slow=slow, transition=transition)
    wait = max((int(until_ms) - int(now_ms)) / 1000, 0.0)
    return Admission(allowed=False, state=state, retry_in_seconds=wait, slow=slow)


def record(
    endpoint: Endpoint, outcome: Outcome, *, probe: str | None = None, slow: bool = False, count: int = 1
) -> Transition | None:
    """Count one attempt's outcome (or ``count`` alike, in a row); return the transition it caused, if any.

    Only the probe (``probe`` = the token from ``admit``) moves a half-open
    circuit; results of attempts that started before the circuit opened change
    nothing. An IGNORED outcome only hands the probe back. ``slow`` marks a
    failure that held its worker long (``is_slow``): until the next success
    the endpoint's attempts count against the bulkhead's slow compartment.
    """
    if outcome is Outcome.IGNORED:
        if probe:
            release_probe(endpoint, probe)
        return None
    args: list[str | int | float] = [
        outcome.value,
        probe or "",
        settings.HOOKPOST_BREAKER_FAILURE_THRESHOLD,
        settings.HOOKPOST_BREAKER_MIN_ATTEMPTS,
        settings.HOOKPOST_BREAKER_FAILURE_RATE,
        settings.HOOKPOST_BREAKER_WINDOW_SECONDS,
        int(settings.HOOKPOST_BREAKER_COOLDOWN_SECONDS * 1000),
        int(settings.HOOKPOST_BREAKER_MAX_COOLDOWN_SECONDS * 1000),
        _STATE_TTL_SECONDS,
        "1" if slow and outcome is Outcome.FAILURE else "0",
        count,
    ]
    try:
        reply = _RECORD(_keys(endpoint), args)
    except redis.RedisError:
        logger.warning("breaker state unavailable for %s; outcome not counted", endpoint.uid, exc_info=True)
        return None
    state, from_state, fails, cooldown_ms, now_ms, reason = cast("list[Any]", reply)
    if not _text(from_state):
        return None
    transition = Transition(
        from_state=_text(from_state),
        to_state=_text(state),
        reason=_text(reason),
        at=_at(int(now_ms)),
        cooldown_seconds=int(cooldown_ms) / 1000 if _text(state) == OPEN else None,
        consecutive_failures=int(fails),
    )
    _announce(endpoint, transition)
    return transition


def release_probe(endpoint: Endpoint, probe: str) -> None:
    """Hand back a probe that was not used (the attempt was deferred or refused by policy)."""
    try:
        _RELEASE_PROBE(_keys(endpoint)[:1], [probe])
    except redis.RedisError:
        logger.warning("could not release the probe of %s; it lapses with its lease", endpoint.uid)


def reset(endpoint: Endpoint) -> None:
    """Forget the endpoint's breaker state: closed, no failures, base cool-down.

    Used when a tenant re-enables an endpoint. Raises nothing: without Redis
    there is no state to forget.
    """
    try:
        shared_state.client().delete(*_keys(endpoint))
    except redis.RedisError:
        logger.warning("could not reset the breaker of %s", endpoint.uid, exc_info=True)


def snapshot(endpoint: Endpoint) -> Snapshot | None:
    """The breaker's shared state right now; None when Redis is unavailable."""
    state_key, window_key = _keys(endpoint)
    try:
        pipe = shared_state.client().pipeline(transaction=True)
        pipe.hgetall(state_key)
        pipe.hgetall(window_key)
        pipe.time()
        raw_state, raw_window, (secs, micros) = pipe.execute()
    except redis.RedisError:
        return None
    fields = {_text(k): _text(v) for k, v in raw_state.items()}
    now_ms = int(secs) * 1000 + int(micros) // 1000
    oldest = now_ms // 1000 - settings.HOOKPOST_BREAKER_WINDOW_SECONDS + 1
    attempts = failures = 0
    for name, value in raw_window.items():
        kind, _, second = _text(name).partition(":")
        if int(second) >= oldest:
            if kind == "n":
                attempts += int(value)
            else:
                failures += int(value)
    state = fields.get("state", CLOSED)
    return Snapshot(
        state=state,
        changed_at=_at(int(fields["changed_at"])) if "changed_at" in fields else None,
        retry_at=_at(int(fields["open_until"])) if state == OPEN and "open_until" in fields else None,
        cooldown_seconds=int(fields["cooldown"]) / 1000 if state != CLOSED and "cooldown" in fields else None,
        consecutive_failures=int(fields.get("fails", 0)),
        window_attempts=attempts,
        window_failures=failures,
    )


def cooling_down(endpoint_uids: Collection[str]) -> dict[str, float]:
    """Of these endpoints, those whose circuit is open with its cool-down still running,
    each with the seconds it has left (by Redis's clock).

    ``admit`` would deny every attempt to them until then, so the hand-off
    defers their work without queuing it (``admission.held_by_open_circuits``).
    Read-only, and one round trip however many endpoints; empty when Redis is
    unavailable, which leaves every decision to ``admit``.
    """
    uids = list(dict.fromkeys(endpoint_uids))
    if not uids:
        return {}
    try:
        pipe = shared_state.client().pipeline(transaction=False)
        for uid in uids:
            pipe.hmget(_state_key(uid), ["state", "open_until"])
        pipe.time()
        *states, (secs, micros) = pipe.execute()
    except redis.RedisError:
        logger.warning("breakers unavailable; leaving %d endpoints to admission", len(uids), exc_info=True)
        return {}
    now_ms = int(secs) * 1000 + int(micros) // 1000
    left: dict[str, float] = {}
    for uid, (state, until) in zip(uids, states, strict=True):
        if state is not None and _text(state) == OPEN and until is not None and int(until) > now_ms:
            left[uid] = (int(until) - now_ms) / 1000
    return left


# --- Announcing transitions ---------------------------------------------------------


def _announce(endpoint: Endpoint, transition: Transition) -> None:
    """Log, count (signal) and mirror a transition on the Endpoint row."""
    log = logger.warning if transition.to_state == OPEN else logger.info
    log(
        "circuit of %s %s -> %s (%s)",
        endpoint.uid,
        transition.from_state,
        transition.to_state,
        transition.reason,
        extra={
            "endpoint": endpoint.uid,
            "tenant": endpoint.tenant_id,
            "from_state": transition.from_state,
            "to_state": transition.to_state,
            "reason": transition.reason,
            "cooldown_seconds": transition.cooldown_seconds,
            "consecutive_failures": transition.consecutive_failures,
        },
    )
    # Transitions from different workers may be written out of order; the
    # Redis clock orders them, so an older one never overwrites a newer one.
    Endpoint.objects.filter(pk=endpoint.pk).filter(
        Q(circuit_changed_at__isnull=True) | Q(circuit_changed_at__lt=transition.at)
    ).update(circuit_state=transition.to_state, circuit_changed_at=transition.at)
    signals.circuit_transitioned.send(
        sender=Endpoint,
        endpoint_uid=endpoint.uid,
        tenant_id=endpoint.tenant_id,
        from_state=transition.from_state,
        to_state=transition.to_state,
        reason=transition.reason,
        cooldown_seconds=transition.cooldown_seconds,
    )
    if transition.from_state == HALF_OPEN and transition.to_state == CLOSED:
        operational.endpoint_recovered(endpoint=endpoint, at=transition.at)
