"""Browser tests: Debian's Chromium, driven by Playwright, against pytest-django's
live server, with the e2e harness's real Celery worker and HTTP receiver.

Chromium is the system one (``/usr/bin/chromium``, installed by
``make browser-deps``); Playwright's own browser download is never used. A
failing test leaves a screenshot of its page in ``test-artifacts/``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy
import pytest
from playwright.sync_api import Browser, Dialog, Page, Playwright, expect, sync_playwright

from tests.e2e.conftest import broker, e2e_settings, receiver, worker  # noqa: F401  (fixtures)

CHROMIUM = os.environ.get("HOOKPOST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "correct-horse-battery-9"


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    """Keep each phase's report on the item, so fixtures can tell a failed test at teardown."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    # Playwright's sync API runs an event loop on this thread; Django refuses
    # ORM calls while one runs unless told the caller is synchronous, as the
    # test code here is.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as pw:
            yield pw
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser-deps` (Debian's chromium package)")
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


@dataclass
class Watch:
    """What the page did besides rendering: dialogs opened, hosts it fetched from."""

    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def browser_settings(settings: Any, e2e_settings: Any) -> Any:  # noqa: F811
    """The live server speaks plain http on localhost: cookies must not require TLS."""
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    return settings


@pytest.fixture
def watch() -> Watch:
    return Watch()


def call_failed(request: pytest.FixtureRequest) -> bool:
    """Whether the test itself (not its setup) failed; for fixtures, at teardown."""
    report = getattr(request.node, "rep_call", None)
    return report is not None and bool(report.failed)


@contextmanager
def browser_tab(browser: Browser, base_url: str, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page in a context of its own on ``base_url``, with 15 s timeouts; when the test
    failed, a screenshot of it in ``test-artifacts/``."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    expect.set_options(timeout=15_000)  # expect() keeps its own 5 s default otherwise
    tab = context.new_page()
    yield tab
    if call_failed(request):
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
        try:
            tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        except Exception:  # a crashed page must not hide the test's own failure
            pass
    context.close()


@pytest.fixture
def page(browser: Browser, live_server: Any, watch: Watch, request: pytest.FixtureRequest) -> Iterator[Page]:
    def on_dialog(dialog: Dialog) -> None:
        watch.dialogs.append(dialog.message)
        dialog.dismiss()

    with browser_tab(browser, live_server.url, request) as tab:
        tab.on("dialog", on_dialog)
        tab.on("request", lambda r: watch.requests.append(r.url))
        yield tab


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/screenshots/ (for docs and debugging)."""
    folder = ARTIFACTS / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
