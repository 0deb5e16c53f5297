"""Endpoint secrets at rest: with HOOKPOST_ENCRYPTION_KEY set the column holds
only Fernet ciphertext, every read path sees the plaintext, signatures still
verify with the standardwebhooks package, and keys rotate with
``manage.py encrypt_secrets``."""

from __future__ import annotations

import time
from io import StringIO

import pytest
import standardwebhooks
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection

from deliveries.outbound import build_request
from deliveries.services import NewMessage, message_publish
from tests.factories import EventTypeFactory, TenantFactory
from webhooks import encryption, selectors, services
from webhooks.models import EndpointSecret

pytestmark = pytest.mark.django_db

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()


def _raw() -> dict[int, str]:
    """The secret column exactly as stored."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, secret FROM {EndpointSecret._meta.db_table} ORDER BY id")
        return dict(cursor.fetchall())


def _endpoint(url: str = "https://receiver.example.com/hook"):
    return services.endpoint_create(tenant=TenantFactory.create(), url=url)


def test_with_a_key_the_column_holds_no_plaintext_and_reads_give_it_back(settings):
    settings.HOOKPOST_ENCRYPTION_KEY = KEY_A
    created = _endpoint()
    rotated = services.endpoint_secret_rotate(endpoint=created.endpoint)

    raw = _raw()
    assert len(raw) == 2
    for stored in raw.values():
        assert stored.startswith("fernet:") and "whsec_" not in stored
        assert created.secret not in stored and rotated not in stored
    # every read path sees plaintext
    assert selectors.endpoint_current_secret(endpoint=created.endpoint) == rotated
    assert set(selectors.endpoint_signing_secrets(endpoint=created.endpoint)) == {created.secret, rotated}
    assert set(EndpointSecret.objects.values_list("secret", flat=True)) == {created.secret, rotated}


def test_signatures_made_with_encrypted_secrets_verify_with_standardwebhooks(settings):
    settings.HOOKPOST_ENCRYPTION_KEY = KEY_A
    settings.HOOKPOST_ALLOWED_TARGET_NETWORKS = []
    created = _endpoint()
    event_type = EventTypeFactory.create(name="invoice.paid")
    published = message_publish(
        tenant=created.endpoint.tenant, new=NewMessage(event_type=event_type.name, payload={"amount": 1})
    )
    delivery = published.message.deliveries.get()
    request = build_request(delivery, created.endpoint, int(time.time()))

    payload = standardwebhooks.Webhook(created.secret).verify(request.body.decode(), request.headers)
    assert payload["data"] == {"amount": 1}


def test_plaintext_rows_from_before_the_key_stay_readable_until_encrypted(settings):
    settings.HOOKPOST_ENCRYPTION_KEY = ""
    created = _endpoint()
    assert list(_raw().values()) == [created.secret]  # no key: stored as is

    settings.HOOKPOST_ENCRYPTION_KEY = KEY_A
    assert selectors.endpoint_current_secret(endpoint=created.endpoint) == created.secret
    with pytest.raises(CommandError):
        call_command("encrypt_secrets", "--check", stdout=StringIO())

    out = StringIO()
    call_command("encrypt_secrets", stdout=out)

    assert "Encrypted 1 endpoint secrets." in out.getvalue()
    (stored,) = _raw().values()
    assert stored.startswith("fernet:")
    assert Fernet(KEY_A.encode()).decrypt(stored.removeprefix("fernet:").encode()).decode() == created.secret
    call_command("encrypt_secrets", "--check", stdout=StringIO())  # passes now


def test_encrypt_secrets_is_idempotent(settings):
    # given a mix of plaintext rows (from before a key) and rows encrypted with A
    settings.HOOKPOST_ENCRYPTION_KEY = ""
    plain = [_endpoint() for _ in range(2)]
    settings.HOOKPOST_ENCRYPTION_KEY = KEY_A
    encrypted = _endpoint()

    # when the command runs twice
    first, second = StringIO(), StringIO()
    call_command("encrypt_secrets", stdout=first)
    after_first = _raw()
    call_command("encrypt_secrets", stdout=second)

    # then every row is encrypted once (never twice) and reads back the same secret
    assert "Encrypted 3 endpoint secrets." in first.getvalue()
    assert "Encrypted 3 endpoint secrets." in second.getvalue()
    fernet = Fernet(KEY_A.encode())
    for before, stored in zip(after_first.values(), _raw().values(), strict=True):
        assert stored.startswith("fernet:") and stored.count("fernet:") == 1
        assert fernet.decrypt(stored.removeprefix("fernet:").encode()) == fernet.decrypt(
            before.removeprefix("fernet:").encode()
        )
    assert [selectors.endpoint_current_secret(endpoint=c.endpoint) for c in [*plain, encrypted]] == [
        c.secret for c in [*plain, encrypted]
    ]
    call_command("encrypt_secrets", "--check", stdout=StringIO())


def test_rotating_keys_keeps_old_rows_readable_and_re_encrypts_them(settings):
    # given secrets encrypted with key A
    settings.HOOKPOST_ENCRYPTION_KEY = KEY_A
    created = [_endpoint() for _ in range(3)]

    # when B is put first and A kept
    settings.HOOKPOST_ENCRYPTION_KEY = f"{KEY_B},{KEY_A}"

    # then the rows written with A are still readable, and new rows use B
    assert [selectors.endpoint_current_secret(endpoint=c.endpoint) for c in created] == [
        c.secret for c in created
    ]
    newer = _endpoint()
    newest_stored = _raw()[max(_raw())]
    assert (
        Fernet(KEY_B.encode()).decrypt(newest_stored.removeprefix("fernet:").encode()).decode()
        == newer.secret
    )

    # when the command re-encrypts everything
    call_command("encrypt_secrets", stdout=StringIO())

    # then every row opens with B alone, so A can be dropped
    settings.HOOKPOST_ENCRYPTION_KEY = KEY_B
    for stored in _raw().values():
        Fernet(KEY_B.encode()).decrypt(stored.removeprefix("fernet:").encode())
    assert [selectors.endpoint_current_secret(endpoint=c.endpoint) for c in created] == [
        c.secret for c in created
    ]

    # and with only the old key, the rows are unreadable -- loudly, not as garbage secrets
    settings.HOOKPOST_ENCRYPTION_KEY = KEY_A
    with pytest.raises(encryption.SecretUnreadable):
        selectors.endpoint_current_secret(endpoint=created[0].endpoint)


def test_decrypt_writes_plaintext_back_for_removing_encryption(settings):
    settings.HOOKPOST_ENCRYPTION_KEY = KEY_A
    created = _endpoint()

    call_command("encrypt_secrets", "--decrypt", stdout=StringIO())

    assert list(_raw().values()) == [created.secret]
    settings.HOOKPOST_ENCRYPTION_KEY = ""
    assert selectors.endpoint_current_secret(endpoint=created.endpoint) == created.secret


def test_encrypted_rows_without_a_key_are_refused(settings):
    settings.HOOKPOST_ENCRYPTION_KEY = KEY_A
    created = _endpoint()
    settings.HOOKPOST_ENCRYPTION_KEY = ""
    with pytest.raises(encryption.SecretUnreadable):
        selectors.endpoint_current_secret(endpoint=created.endpoint)
    with pytest.raises(CommandError):
        call_command("encrypt_secrets", stdout=StringIO())


def test_a_malformed_key_is_a_configuration_error(settings):
    settings.HOOKPOST_ENCRYPTION_KEY = "not-a-fernet-key"
    with pytest.raises(ImproperlyConfigured):
        encryption.encrypt("whsec_x")


def test_values_are_never_encrypted_twice(settings):
    settings.HOOKPOST_ENCRYPTION_KEY = KEY_A
    once = encryption.encrypt("whsec_abc")
    assert encryption.encrypt(once) == once
    assert encryption.decrypt(once) == "whsec_abc"
