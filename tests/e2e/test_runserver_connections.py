"""``manage.py runserver`` under DEBUG (what `make run` starts) keeps no idle
PostgreSQL connections: it serves each request on a new thread, and a kept
connection would stay open per thread."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.db import connection

from tests.e2e.conftest import _database_url
from tests.e2e.helpers import wait_until
from tests.e2e.private_redis import free_port
from tests.e2e.processes import ROOT, process_group

pytestmark = pytest.mark.e2e

APP_NAME = "e2e-runserver-connections"


def _status(url: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": "Bearer hp_not_a_key"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def _backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [APP_NAME])
        (count,) = cursor.fetchone()
    return int(count)


@pytest.mark.django_db(transaction=True)
def test_runserver_under_debug_keeps_no_connection_after_its_requests(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "true",
        "DATABASE_URL": _database_url(),
        "PGAPPNAME": APP_NAME,  # libpq names the server's connections after it
    }
    env.pop("DB_CONN_MAX_AGE", None)
    cmd = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]
    url = f"http://127.0.0.1:{port}/api/v1/tenants/demo/messages/"
    with process_group(cmd, cwd=ROOT, env=env, log=tmp_path / "runserver.log"):
        wait_until(lambda: _status(url) == 401, timeout=30, what="runserver to answer")

        # Each request looks its key up in PostgreSQL, on a thread of its own.
        statuses = [_status(url) for _ in range(30)]

        assert statuses == [401] * 30
        # A request's connection closes just after its response went out.
        wait_until(lambda: _backends() == 0, timeout=5, what="runserver's connections to close")
