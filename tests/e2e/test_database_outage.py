"""PostgreSQL unreachable: gunicorn, run as in production, reaches the test
database through a proxy the test cuts. While it is cut every path answers 503
with ``Retry-After`` (the error envelope on the API, a plain page in the admin),
never a bare 500; once it is back, requests succeed again without a restart."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from tests.e2e import processes
from tests.e2e.helpers import wait_until
from tests.e2e.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def database_proxy(django_db_setup) -> Iterator[TcpProxy]:
    db = django_settings.DATABASES["default"]
    proxy = TcpProxy(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def gunicorn(database_proxy: TcpProxy, tmp_path: Path, settings) -> Iterator[int]:
    """gunicorn with ``config/gunicorn.py``, its database reached through ``database_proxy``."""
    db = django_settings.DATABASES["default"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{db['USER']}@127.0.0.1:{database_proxy.port}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
    }
    with processes.gunicorn(env, tmp_path / "gunicorn.log") as server:
        yield server.port


def _get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()
    except OSError:
        return 0, {}, b""


def _post(port: int, path: str, body: object, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={**headers, "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_every_path_answers_503_with_retry_after_while_postgresql_is_unreachable(
    gunicorn: int, database_proxy: TcpProxy, make_client, tenant, event_type
):
    # Given a running web process and a tenant key that works
    auth = {"Authorization": f"Bearer {make_client(tenant).raw}"}
    endpoints = f"/api/v1/tenants/{tenant.uid}/endpoints/"
    assert _get(gunicorn, endpoints, auth)[0] == 200

    # When PostgreSQL becomes unreachable (new connections refused, open ones cut)
    database_proxy.stop()

    # Then the API answers 503 in the error envelope, with Retry-After, for reads and publishes
    publish = {"event_type": event_type.name, "payload": {"n": 1}}
    for status, headers, body in (
        _get(gunicorn, endpoints, auth),
        _post(gunicorn, f"/api/v1/tenants/{tenant.uid}/messages/", publish, auth),
    ):
        assert status == 503, (status, body[:500])
        assert json.loads(body)["error"]["code"] == "service_unavailable", body[:500]
        assert int(headers["Retry-After"]) > 0, headers
    # ... the admin (its session is looked up in PostgreSQL) a plain 503 page, with Retry-After
    status, headers, body = _get(gunicorn, "/admin/", {"Cookie": "sessionid=" + "x" * 32})
    assert status == 503, (status, body[:500])
    assert headers["Content-Type"].startswith("text/html") and int(headers["Retry-After"]) > 0, headers
    # ... and /readyz reports it
    assert _get(gunicorn, "/readyz")[0] == 503

    # When PostgreSQL is reachable again, requests succeed without a restart
    database_proxy.start()
    wait_until(lambda: _get(gunicorn, endpoints, auth)[0] == 200, 15, "the API to answer 200 again")
