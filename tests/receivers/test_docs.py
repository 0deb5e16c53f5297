"""The code in docs/receivers.md runs and does what the guide says.

Every Python block is marked ``<!-- test: <file>.py -->``; the blocks are written
as the files of a small Django app (``receiver_docs_example``), installed for
this module, and fed signed, forged, stale and replayed requests through real
URL routing. The guide's example request must verify with its example secret.
"""

from __future__ import annotations

import importlib
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from django.apps import apps
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import override_settings

from tests.receivers.helpers import event_body, signed_headers
from webhooks import signing
from webhooks.receiver import replay_key

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "receivers.md"
PACKAGE = "receiver_docs_example"
SNIPPET = re.compile(r"<!-- test: (?P<file>\w+\.py) -->\n```python\n(?P<code>.*?)^```$", re.S | re.M)
EXAMPLE = re.compile(r"`(?P<secret>whsec_\w+)`:\n\n```http\n(?P<request>.*?)^```$", re.S | re.M)


def snippets() -> dict[str, str]:
    """``{file name: code}`` of the marked Python blocks, in the guide's order."""
    return {m["file"]: m["code"] for m in SNIPPET.finditer(GUIDE.read_text(encoding="utf-8"))}


@pytest.fixture(scope="module")
def example_app(tmp_path_factory: pytest.TempPathFactory, django_db_setup: None) -> Iterator[ModuleType]:
    """The guide's snippets as an installed Django app (after the test database exists,
    so its model gets no table there; each test creates it inside its transaction)."""
    root = tmp_path_factory.mktemp("docs")
    package_dir = root / PACKAGE
    package_dir.mkdir()
    (package_dir / "__init__.py").write_text('"""The code of docs/receivers.md."""\n')
    for name, code in snippets().items():
        (package_dir / name).write_text(code, encoding="utf-8")
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        # Installing the app imports models.py; the URLconf is the guide's urls.py.
        with override_settings(
            INSTALLED_APPS=[*django_settings.INSTALLED_APPS, PACKAGE], ROOT_URLCONF=f"{PACKAGE}.urls"
        ):
            yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(root))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]
        # Forget the model too, so a second set-up registers it afresh instead of
        # warning about a reload; the app is already uninstalled at this point.
        apps.all_models.pop(PACKAGE, None)
        apps.clear_cache()


def load(example_app: ModuleType, name: str) -> Any:
    return importlib.import_module(f"{example_app.__name__}.{name}")


def standalone(file_name: str) -> ModuleType:
    """A snippet that needs no Django app, executed as a module of its own."""
    module = ModuleType(file_name.removesuffix(".py"))
    exec(compile(snippets()[file_name], f"docs/receivers.md:{file_name}", "exec"), module.__dict__)
    return module


@pytest.fixture
def secret(settings: Any) -> str:
    """The receiver's secret, in its settings as the guide suggests."""
    value = signing.generate_secret()
    settings.HOOKPOST_WEBHOOK_SECRETS = [value]
    return value


@pytest.fixture
def processed_webhooks(example_app: ModuleType, db: None) -> Any:
    """The guide's ProcessedWebhook model, with its table for this test."""
    model = load(example_app, "models").ProcessedWebhook
    with connection.schema_editor() as editor:
        editor.create_model(model)  # rolled back with the test's transaction
    return model


def test_every_python_block_of_the_guide_is_tested() -> None:
    text = GUIDE.read_text(encoding="utf-8")

    assert text.count("```python") == len(snippets()) == len(SNIPPET.findall(text))
    assert set(snippets()) == {
        *("models.py", "views.py", "api.py", "urls.py"),  # the Django app
        *("with_standardwebhooks.py", "plain_hmac.py"),  # standalone
    }


def test_the_guide_s_example_request_verifies_with_its_example_secret() -> None:
    match = EXAMPLE.search(GUIDE.read_text(encoding="utf-8"))
    assert match is not None
    head, body = match["request"].split("\n\n", 1)
    headers = dict(line.split(": ", 1) for line in head.splitlines()[1:])

    signing.verify(match["secret"], headers, body.strip().encode(), now=int(headers["webhook-timestamp"]))


# --- Django and DRF views -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "namespace"),
    [
        ("/webhooks/hookpost/", f"{PACKAGE}.views.hookpost_webhook"),
        ("/api/webhooks/hookpost/", f"{PACKAGE}.api.HookpostWebhookAPIView"),
    ],
    ids=["decorator", "drf"],
)
def test_the_guide_s_views_verify_and_process_each_webhook_once(
    url: str, namespace: str, secret: str, processed_webhooks: Any
) -> None:
    client = Client(enforce_csrf_checks=True)
    body = event_body()
    headers = signed_headers(secret, body)
    msg_id = headers["webhook-id"]

    def post(data: bytes, hdrs: dict[str, str]) -> int:
        return client.post(url, data=data, content_type="application/json", headers=hdrs).status_code

    # A forged request and a stale one are refused and record nothing
    assert post(body, signed_headers(signing.generate_secret(), body, msg_id=msg_id)) == 401
    assert post(body, signed_headers(secret, body, msg_id=msg_id, timestamp=int(time.time()) - 600)) == 401
    assert post(body, {}) == 400
    assert not processed_webhooks.objects.exists()

    # The signed request is processed once
    assert post(body, headers) == 204
    assert list(processed_webhooks.objects.values_list("webhook_id", flat=True)) == [msg_id]

    # Its replay is refused by the replay guard
    assert post(body, headers) == 409

    # Once the guard forgot the id, Hookpost's retry is acknowledged without processing it again
    cache.delete(replay_key(namespace, msg_id))
    retry = signed_headers(secret, body, msg_id=msg_id, timestamp=int(time.time()) + 1)
    assert post(body, retry) == 204
    assert processed_webhooks.objects.count() == 1


# --- Without our helper ------------------------------------------------------------------------
def test_the_standardwebhooks_snippet() -> None:
    parse_webhook = standalone("with_standardwebhooks.py").parse_webhook
    secret = signing.generate_secret()
    body = event_body("invoice.paid", {"amount": 7})
    headers = signed_headers(secret, body)

    assert parse_webhook(secret, headers, body)["data"] == {"amount": 7}
    assert parse_webhook(signing.generate_secret(), headers, body) is None
    assert parse_webhook(secret, headers, event_body("invoice.paid", {"amount": 7}, indent=2)) is None
    assert parse_webhook(secret, {**headers, "webhook-signature": "garbage"}, body) is None
    assert parse_webhook(secret, signed_headers(secret, b"not json"), b"not json") is None
    stale = signed_headers(secret, body, timestamp=int(time.time()) - 600)
    assert parse_webhook(secret, stale, body) is None


def test_the_plain_hmac_snippet() -> None:
    is_valid_webhook = standalone("plain_hmac.py").is_valid_webhook
    secret, other = signing.generate_secret(), signing.generate_secret()
    body = event_body()
    headers = signed_headers(secret, body)

    assert is_valid_webhook(secret, headers, body)
    assert is_valid_webhook(secret, {k.title(): v for k, v in headers.items()}, body)
    assert is_valid_webhook(secret.removeprefix("whsec_"), headers, body)
    # Rotation: two signatures, either secret verifies
    rotating = signed_headers([other, secret], body)
    assert is_valid_webhook(secret, rotating, body) and is_valid_webhook(other, rotating, body)
    # Refused: a stranger's secret, other body bytes, a stale or future timestamp, bad headers
    assert not is_valid_webhook(other, headers, body)
    assert not is_valid_webhook(secret, headers, event_body(indent=2))
    assert not is_valid_webhook(secret, signed_headers(secret, body, timestamp=int(time.time()) - 301), body)
    assert not is_valid_webhook(secret, signed_headers(secret, body, timestamp=int(time.time()) + 301), body)
    for name in signing.HEADER_NAMES:
        assert not is_valid_webhook(secret, {k: v for k, v in headers.items() if k != name}, body)
    assert not is_valid_webhook(secret, {**headers, "webhook-timestamp": "soon"}, body)
    assert not is_valid_webhook(secret, {**headers, "webhook-signature": "v1,é"}, body)
