"""The production stack as docs/operations.md deploys it, in a real Chromium.

``manage.py collectstatic``, then gunicorn with ``config/gunicorn.py`` and the real
``config.settings`` (DEBUG unset, a fresh SECRET_KEY, nothing from the suite's
settings) on the test database. A tenant admin logs in: the admin's stylesheet
loads, a list filter and a bulk action work. The API docs (Swagger UI and Redoc)
render, and no request of the whole visit leaves 127.0.0.1.

The server speaks plain http with no TLS proxy in front, so the only production
setting changed is ``SECURE_SSL_REDIRECT=false``. The session and CSRF cookies
stay ``Secure``: Chromium counts http://127.0.0.1 as a secure context.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from playwright.sync_api import Browser, Page, Response, Route, expect

from bench import process_groups
from deliveries.models import Delivery
from tests.browser.conftest import PASSWORD, browser_tab, call_failed
from tests.e2e.conftest import ROOT, _database_url
from tests.e2e.processes import WebServer, gunicorn
from tests.factories import DeliveryFactory, EndpointFactory, MessageFactory
from webhooks.models import EventType, Tenant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BASE_CSS = re.compile(r"/static/admin/css/base\.[0-9a-f]{12}\.css$")
SHEETS_JS = """() => [...document.styleSheets].filter(s => s.href).map(s => {
    try { return [s.href, s.cssRules.length]; } catch (e) { return [s.href, -1]; }
})"""


@dataclass
class Traffic:
    """Every request that reached the network, and the status of each static file.

    Requests for other hosts are recorded and aborted: nothing leaves the machine,
    and the page sees what a machine without internet access would.
    """

    requests: list[str] = field(default_factory=list)
    static: dict[str, int] = field(default_factory=dict)

    def on_route(self, route: Route) -> None:
        self.requests.append(route.request.url)
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            route.abort("internetdisconnected")

    def on_response(self, response: Response) -> None:
        if urlsplit(response.url).path.startswith("/static/"):
            self.static[response.url] = response.status


def _production_env(settings: Any, static_root: Path) -> dict[str, str]:
    """What an operator sets, and nothing else: no DEBUG, none of the suite's variables
    (the bind address and worker count are ``gunicorn()``'s)."""
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "LANG": "C.UTF-8",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.REDIS_URL,
        # The test process's key, so that the server reads the secrets the test wrote.
        "HOOKPOST_ENCRYPTION_KEY": getattr(settings, "HOOKPOST_ENCRYPTION_KEY", None)
        or Fernet.generate_key().decode(),
        "STATIC_ROOT": str(static_root),
        "SECURE_SSL_REDIRECT": "false",
        "LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def production_server(settings: Any, tmp_path: Path) -> Iterator[WebServer]:
    env = _production_env(settings, tmp_path / "static")
    collected = process_groups.run(
        [sys.executable, "manage.py", "collectstatic", "--no-input", "--verbosity", "0"],
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert collected.returncode == 0, collected.stderr[-3000:]
    with gunicorn(env, tmp_path / "gunicorn.log") as server:
        yield server


@pytest.fixture
def page(browser: Browser, production_server: WebServer, request: pytest.FixtureRequest) -> Iterator[Page]:
    with browser_tab(browser, production_server.url, request) as tab:
        yield tab
    if call_failed(request):
        print(production_server.log.read_text()[-3000:])


def _world(settings: Any) -> tuple[Tenant, list[Delivery], Delivery]:
    """A tenant admin, and an endpoint with two dead letters and one success."""
    # The server runs production settings, which do not know the suite's fast MD5 hasher.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    tenant = Tenant.objects.create(uid="acme", name="Acme Inc.")
    call_command("create_tenant_user", "alice", "--tenant", "acme", "--password", PASSWORD)
    endpoint = EndpointFactory.create(tenant=tenant)
    event_type = EventType.objects.create(name="invoice.paid")

    def make(status: str) -> Delivery:
        message = MessageFactory.create(tenant=tenant, event_type=event_type)
        return DeliveryFactory.create(message=message, endpoint=endpoint, status=status, attempt_count=1)

    dead = [make(Delivery.Status.DEAD), make(Delivery.Status.DEAD)]
    return tenant, dead, make(Delivery.Status.SUCCEEDED)


def test_admin_and_api_docs_work_on_the_production_stack(page: Page, settings: Any) -> None:
    _, dead, succeeded = _world(settings)
    traffic = Traffic()
    page.route("**/*", traffic.on_route)
    page.on("response", traffic.on_response)

    # Given a tenant admin logged in
    page.goto("/admin/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#user-tools")).to_contain_text("alice")

    # Then the admin's stylesheet is loaded, under its hashed name, with its rules
    # (a sheet that failed to load has no readable rules: -1)
    sheets = page.evaluate(SHEETS_JS)
    base = [rules for href, rules in sheets if BASE_CSS.search(href)]
    assert base and base[0] > 0, sheets
    assert page.evaluate("getComputedStyle(document.querySelector('#header')).display") == "flex"

    # When they filter the delivery history by status in the sidebar
    page.goto("/admin/deliveries/delivery/")
    expect(page.locator("#result_list tbody tr")).to_have_count(3)
    page.locator("#changelist-filter").get_by_role("link", name="Dead letter").click()
    expect(page).to_have_url(re.compile(r"status__exact=dead"))
    expect(page.locator("#result_list tbody tr")).to_have_count(2)

    # ...and replay both with the bulk action (selecting all is the admin's JavaScript)
    page.check("#action-toggle")
    expect(page.locator(".action-counter")).to_contain_text("2 of 2 selected")
    page.select_option("select[name=action]", "replay_selected")
    page.click("button[name=index]")

    # Then both are queued for replay, and the delivered one is untouched
    expect(page.locator(".messagelist .success")).to_contain_text("2 deliveries queued for replay")
    for delivery in dead:
        delivery.refresh_from_db()
        assert delivery.status == Delivery.Status.PENDING
        assert delivery.replay_count == 1
    succeeded.refresh_from_db()
    assert succeeded.status == Delivery.Status.SUCCEEDED

    # When they open the API docs, Swagger UI and Redoc render the schema
    page.goto("/api/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Hookpost API")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    redoc = page.goto("/api/redoc/")
    expect(page.locator("h1").first).to_contain_text("Hookpost API")
    # Redoc's sidebar footer renders its vendor's logo from a CDN a moment after the
    # rest; the page's policy keeps the browser from asking for it.
    expect(page.get_by_text("API docs by Redocly")).to_be_visible()
    assert redoc is not None and "img-src 'self'" in redoc.headers["content-security-policy"]
    page.wait_for_timeout(1000)  # a late request would show within this

    # And every file came from this server: no CDN, no font service
    hosts = {urlsplit(url).hostname for url in traffic.requests if urlsplit(url).scheme in ("http", "https")}
    assert hosts == {"127.0.0.1"}, sorted(set(traffic.requests))
    assert traffic.static and all(status == 200 for status in traffic.static.values()), traffic.static
