"""gunicorn settings: ``gunicorn -c config/gunicorn.py config.wsgi``.

On SIGTERM each worker flags itself not ready (/readyz -> 503) and gunicorn
drains in-flight requests for up to ``graceful_timeout`` seconds.
"""

from __future__ import annotations

import os
from typing import Any

from config.env import env_int

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = env_int("WEB_CONCURRENCY", 2)
threads = env_int("GUNICORN_THREADS", 4)
timeout = 30
graceful_timeout = env_int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = 5
accesslog = "-"


def post_worker_init(worker: Any) -> None:
    from config.health import install_sigterm_hook

    install_sigterm_hook()
