"""gunicorn settings: ``gunicorn -c config/gunicorn.py config.wsgi``.

On SIGTERM each worker flags itself not ready (/readyz -> 503) and gunicorn
drains in-flight requests for up to ``graceful_timeout`` seconds.
"""

from __future__ import annotations

import os
from typing import Any

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = 30
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = 5
accesslog = "-"


def post_worker_init(worker: Any) -> None:
    from config.health import install_sigterm_hook

    install_sigterm_hook()
