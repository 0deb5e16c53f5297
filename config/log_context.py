"""Structured logs: one JSON object per line, with the ids that matter.

A request id is taken from ``X-Request-ID`` (or made up), returned in the
response, attached to every log line of the request, and carried into the
Celery tasks the request queues (as a task header), so one message can be
followed from the API call to the worker's attempts. Services add their own
ids (tenant, endpoint, message, delivery, attempt) with ``extra=``; secrets and
payloads are never logged.
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

from celery.signals import before_task_publish, task_postrun, task_prerun
from django.http import HttpRequest, HttpResponse

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
HEADER = "X-Request-ID"


class ContextFilter(logging.Filter):
    """Adds ``request_id`` to every record (None outside a request or task)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class RequestIdMiddleware:
    """Binds the request id for the duration of the request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get(HEADER, "")
        rid = incoming if _VALID_ID.match(incoming) else uuid.uuid4().hex
        token = request_id.set(rid)
        try:
            response = self.get_response(request)
        finally:
            request_id.reset(token)
        response[HEADER] = rid
        return response


@before_task_publish.connect
def _attach_request_id(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    rid = request_id.get()
    if rid and headers is not None:
        headers.setdefault("hookpost_request_id", rid)


@task_prerun.connect
def _bind_request_id(task: Any = None, **kwargs: Any) -> None:
    rid = getattr(task.request, "hookpost_request_id", None) if task is not None else None
    request_id.set(rid)


@task_postrun.connect
def _unbind_request_id(**kwargs: Any) -> None:
    request_id.set(None)
