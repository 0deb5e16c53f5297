"""Health probes and request ids."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest

from config import health, log_context


@pytest.mark.django_db
def test_healthz_and_readyz_ok(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}


@pytest.mark.django_db
def test_readyz_is_503_when_redis_is_unreachable(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["redis"].startswith("error")


@pytest.mark.django_db
def test_readyz_is_503_while_shutting_down(client, monkeypatch):
    monkeypatch.setattr(health, "_shutting_down", type(health._shutting_down)())
    health.mark_shutting_down()

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["shutdown"] == "shutting down"


@pytest.mark.django_db
def test_request_id_is_echoed_or_made_up(client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="req-123")
    assert response["X-Request-ID"] == "req-123"

    generated = client.get("/healthz", HTTP_X_REQUEST_ID="bad id with spaces")
    assert generated["X-Request-ID"] != "bad id with spaces" and len(generated["X-Request-ID"]) == 32


def test_request_id_travels_into_tasks_and_json_logs(capsys):
    token = log_context.request_id.set("req-abc")
    headers: dict[str, str] = {}
    log_context._attach_request_id(headers=headers)
    log_context.request_id.reset(token)
    assert headers == {"hookpost_request_id": "req-abc"}

    # In the worker: the header becomes the task's context for its log lines.
    log_context._bind_request_id(task=SimpleNamespace(request=SimpleNamespace(hookpost_request_id="req-abc")))
    handler = logging.StreamHandler()
    from pythonjsonlogger.json import JsonFormatter

    handler.setFormatter(JsonFormatter("%(levelname)s %(message)s %(request_id)s"))
    handler.addFilter(log_context.ContextFilter())
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "attempt %s", ("1",), None)
    handler.filter(record)
    line = json.loads(handler.format(record))
    log_context._unbind_request_id()

    assert line == {"levelname": "INFO", "message": "attempt 1", "request_id": "req-abc"}
    assert log_context.request_id.get() is None
