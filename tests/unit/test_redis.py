"""The suite runs against a real Redis: the Django cache is the Redis backend."""

from __future__ import annotations

import uuid
from typing import cast

import redis
from django.conf import settings
from django.core.cache import cache


def test_default_cache_is_the_redis_backend() -> None:
    assert settings.REDIS_URL
    assert settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert settings.CACHES["default"]["LOCATION"] == settings.REDIS_URL


def test_cache_round_trips_a_value_through_redis() -> None:
    key = f"test-redis-{uuid.uuid4().hex}"
    value = {"endpoint": "ep_1", "failures": [1, 2, 3]}
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        cache.set(key, value, timeout=30)

        assert cache.get(key) == value
        # The value really is in Redis, under the cache's prefixed key.
        assert client.exists(cache.make_key(key)) == 1
        assert 0 < cast(int, client.ttl(cache.make_key(key))) <= 30
    finally:
        cache.delete(key)
        client.close()

    assert cache.get(key) is None
