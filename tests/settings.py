"""Settings for the test suite: the real settings, with test defaults for the
environment (a real PostgreSQL and Redis on this machine)."""

from __future__ import annotations

import os

# The suite never reads a developer's .env (written by `make run`: DEBUG, its Redis,
# a narrowed address policy); its subprocesses inherit this too.
os.environ.setdefault("HOOKPOST_DOTENV", "")
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/hookpost")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
# Under pytest-xdist (make test) each worker process takes a Redis database of its own,
# counting down from the one above: the broker, caches and breaker states of tests
# running at once never mix. Its subprocesses inherit the result (and the mark that
# keeps them from counting down again).
_xdist_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
_redis_base, _, _redis_db = os.environ["REDIS_URL"].rpartition("/")
if (
    _xdist_worker.startswith("gw")
    and _redis_db.isdigit()
    and os.environ.get("HOOKPOST_TEST_REDIS_OF") != _xdist_worker
):
    _worker_db = int(_redis_db) - int(_xdist_worker[2:])
    if _worker_db < 1:  # database 0 is everybody's default: never the suite's to flush
        raise RuntimeError(f"REDIS_URL's database leaves none for xdist worker {_xdist_worker}: use 15")
    os.environ["REDIS_URL"] = f"{_redis_base}/{_worker_db}"
    os.environ["HOOKPOST_TEST_REDIS_OF"] = _xdist_worker
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
# Secrets are encrypted at rest in the suite as in production; subprocesses
# (workers, servers) inherit the same key through os.environ.
os.environ.setdefault("HOOKPOST_ENCRYPTION_KEY", "dGVzdC1vbmx5LWVuY3J5cHRpb24ta2V5LTAxMjM0NTY=")

from config.settings import *  # noqa: E402, F403  (after the environment above)

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast test users

# The suite never runs collectstatic: WhiteNoise serves the apps' files under their
# own names (the manifest storage needs collectstatic's manifest), and there is no
# STATIC_ROOT to read.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
STATIC_ROOT = None
WHITENOISE_USE_FINDERS = True
# The test client and the suite's servers speak plain http.
SECURE_SSL_REDIRECT = False
