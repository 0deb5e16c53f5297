"""The Redis that holds per-endpoint protection state shared by every worker.

The circuit breaker (``deliveries.breaker``), the rate limiter
(``deliveries.ratelimit``) and the endpoint bulkhead (``deliveries.bulkhead``)
keep their state here, changed only by Lua scripts so each transition is one
atomic step however many workers race for it. None of it is the only copy of
anything accepted: losing it (a flush, a restart) reopens nothing worse than a
fresh start, with every circuit closed and every bucket full.

Keys are ``hookpost:<mechanism>:{<endpoint uid>}…``: the braces are a Redis
Cluster hash tag, so all keys of one endpoint live on one shard and a script
may touch several of them. Endpoint uids (``ep_<ulid>``), not primary keys,
name them, so a recreated database never inherits an old endpoint's state.

Callers treat ``redis.RedisError`` as "no protection state available" and let
work through (fail open): with Redis down the broker is down too, and blocking
every delivery on a lost breaker would turn a Redis hiccup into an outage.
"""

from __future__ import annotations

import threading

import redis
from django.conf import settings
from redis.commands.core import Script

PREFIX = "hookpost"

_lock = threading.Lock()
_clients: dict[str, redis.Redis] = {}


class Unavailable(redis.RedisError):
    """No Redis is configured (``REDIS_URL`` unset)."""


def client() -> redis.Redis:
    """The process-wide client for ``REDIS_URL`` (thread-safe connection pool).

    Raises Unavailable when no Redis is configured. Short socket timeouts
    (``REDIS_*_TIMEOUT_SECONDS``): a stalled Redis must cost a delivery or a
    publish's hand-off a fraction of a second, not its lease or its request.
    """
    url = settings.REDIS_URL
    if not url:
        raise Unavailable("REDIS_URL is not set")
    with _lock:
        found = _clients.get(url)
        if found is None:
            found = redis.Redis.from_url(
                url,
                socket_timeout=settings.REDIS_SOCKET_TIMEOUT_SECONDS,
                socket_connect_timeout=settings.REDIS_CONNECT_TIMEOUT_SECONDS,
                health_check_interval=30,
            )
            _clients[url] = found
        return found


def key(mechanism: str, endpoint_uid: str, *rest: str) -> str:
    """``hookpost:<mechanism>:{<endpoint uid>}[:rest…]``."""
    return ":".join([PREFIX, mechanism, "{" + endpoint_uid + "}", *rest])


# Lua prelude: ``now``, Redis's own clock in milliseconds, so every worker's script
# times leases, cool-downs and buckets by one clock whatever the workers' clocks say.
LUA_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""


class LuaScript:
    """A Lua script registered on first use with the current client.

    redis-py's ``Script`` runs EVALSHA and falls back to loading the script
    when Redis answers NOSCRIPT (after a restart or SCRIPT FLUSH).
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self._scripts: dict[int, Script] = {}

    def __call__(self, keys: list[str], args: list[str | int | float]) -> object:
        conn = client()
        script = self._scripts.get(id(conn))
        if script is None:
            script = conn.register_script(self.source)
            self._scripts[id(conn)] = script
        return script(keys=keys, args=args)
