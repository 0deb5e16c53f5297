"""Endpoint secrets encrypted at rest, with keys that rotate.

``HOOKPOST_ENCRYPTION_KEY`` holds one or more Fernet keys (comma-separated;
``cryptography.fernet.Fernet.generate_key()``); production refuses to start
without it (config.settings) or with a malformed one (``check_keys``). Every
secret is stored as ``fernet:`` + a Fernet token (AES-128-CBC + HMAC-SHA256,
timestamped) made with the *first* key; *any* listed key decrypts
(``MultiFernet``). Rotating:

1. put the new key first and keep the old ones after it; deploy;
2. ``python manage.py encrypt_secrets``: re-encrypts every row with the new key
   (and encrypts rows stored before any key was set);
3. drop the old keys; deploy.

Without a key (development only) secrets are stored as they are. Plaintext
rows (written before a key was configured) stay readable, recognised by their
``whsec_`` prefix, until step 2 encrypts them. A ciphertext that no configured
key opens raises ``SecretUnreadable``: a key was dropped too early, and passing
the ciphertext on as a secret would only make every signature wrong.

``EncryptedSecretField`` applies this on every path to and from the database
(ORM reads, ``.values()``, saves and ``.update()``), so services, selectors,
the admin and the delivery engine only ever see plaintext secrets.

Uses the ``cryptography`` package (Fernet/MultiFernet): nothing here is
hand-rolled cryptography.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

MARKER = "fernet:"


class SecretUnreadable(ImproperlyConfigured):
    """A stored secret is encrypted and no configured key decrypts it."""


@functools.lru_cache(maxsize=8)
def _multi_fernet(keys: str) -> MultiFernet | None:
    parts = [part.strip() for part in keys.split(",") if part.strip()]
    if not parts:
        return None
    try:
        return MultiFernet([Fernet(part.encode()) for part in parts])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "HOOKPOST_ENCRYPTION_KEY must be comma-separated Fernet keys (url-safe base64 of 32 bytes), "
            "e.g. from cryptography.fernet.Fernet.generate_key()."
        ) from exc


def _keys() -> MultiFernet | None:
    return _multi_fernet(settings.HOOKPOST_ENCRYPTION_KEY or "")


def check_keys() -> None:
    """Raise ImproperlyConfigured if ``HOOKPOST_ENCRYPTION_KEY`` is malformed; run at startup."""
    _keys()


def enabled() -> bool:
    """Whether secrets are encrypted when written."""
    return _keys() is not None


def is_encrypted(stored: str) -> bool:
    return stored.startswith(MARKER)


def encrypt(plaintext: str) -> str:
    """What to store for ``plaintext``: a ciphertext with the first key, or the text itself without keys.

    Already-encrypted values are returned unchanged (never encrypted twice).
    """
    keys = _keys()
    if keys is None or is_encrypted(plaintext):
        return plaintext
    return MARKER + keys.encrypt(plaintext.encode()).decode("ascii")


def decrypt(stored: str) -> str:
    """The plaintext of a stored value; raises SecretUnreadable if no configured key opens it."""
    if not is_encrypted(stored):
        return stored
    keys = _keys()
    if keys is None:
        raise SecretUnreadable("An endpoint secret is encrypted but HOOKPOST_ENCRYPTION_KEY is not set.")
    try:
        return keys.decrypt(stored[len(MARKER) :].encode("ascii")).decode()
    except InvalidToken as exc:
        raise SecretUnreadable(
            "An endpoint secret is encrypted with a key that is not in HOOKPOST_ENCRYPTION_KEY."
        ) from exc


def reencrypt(stored: str) -> str:
    """``stored`` encrypted with the current first key (plaintext is encrypted; no keys: plaintext)."""
    plaintext = decrypt(stored)
    keys = _keys()
    if keys is None:
        return plaintext
    return MARKER + keys.encrypt(plaintext.encode()).decode("ascii")


if TYPE_CHECKING:
    from django.db.models.expressions import Combinable

    # Set as str (or an expression), read as str: what the plugin reports for the column.
    _TextField = models.TextField[str | Combinable, str]
else:  # fields are generic only in django-stubs
    _TextField = models.TextField


class EncryptedSecretField(_TextField):
    """A text column whose values are encrypted at rest when keys are configured.

    Not for lookups: each encryption is randomised, so ``filter(secret=...)``
    never matches.
    """

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        return None if value is None else decrypt(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        return None if value is None else encrypt(str(value))
