"""Keeps the scheduler tick out of the logs: it runs every second and mostly finds nothing.

Celery logs each run of a periodic task three times at INFO (beat: "Sending due
task", the worker: "received" and "succeeded"), a few lines a second for the
tick alone. ``QuietTicks`` drops those INFO lines for the tasks in
``QUIET_TASKS``; their warnings and errors pass, and the tick logs itself at
INFO when it hands work out (deliveries.tasks.dispatch_due).
"""

from __future__ import annotations

import logging

QUIET_TASKS = frozenset({"hookpost.dispatch_due", "dispatch-due-deliveries"})

# Where Celery logs those lines; the filter sits on these loggers (LOGGING in settings).
CELERY_LOGGERS = ("celery.beat", "celery.worker.strategy", "celery.app.trace")


class QuietTicks(logging.Filter):
    """False for an INFO-or-lower record about a task (or beat entry) in ``QUIET_TASKS``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        args = record.args
        # Celery's worker passes one dict (with "name"); beat passes (entry name, task name).
        if isinstance(args, dict):
            return args.get("name") not in QUIET_TASKS
        if isinstance(args, tuple):
            return not any(isinstance(arg, str) and arg in QUIET_TASKS for arg in args)
        return True
