"""Settings come from the environment, and production is the default.

Each case imports the real ``config.settings`` in a fresh interpreter with a
clean environment, as a deployed process would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from bench import process_groups

PROJECT_DIR = Path(__file__).resolve().parents[2]
START = (
    "import django; from django.conf import settings; django.setup(); "
    "print('DEBUG=%s SECRET_KEY=%s' % (settings.DEBUG, settings.SECRET_KEY))"
)


def start(code: str = START, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (``django.setup()`` and a print) with ``config.settings`` and only ``env`` set."""
    # HOOKPOST_DOTENV empty: a developer's .env (from `make run`) stays out of it.
    clean = {"PATH": os.defpath, "DJANGO_SETTINGS_MODULE": "config.settings", "HOOKPOST_DOTENV": "", **env}
    return process_groups.run([sys.executable, "-c", code], cwd=PROJECT_DIR, env=clean, timeout=60)


def test_production_without_secret_key_refuses_to_start() -> None:
    result = start()

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY" in result.stderr


def test_debug_true_starts_without_secret_key() -> None:
    result = start(DEBUG="true")

    assert result.returncode == 0, result.stderr
    assert "DEBUG=True" in result.stdout


@pytest.mark.parametrize("typo", ["ture", "yes please", "2"])
def test_a_debug_typo_stops_the_process(typo: str) -> None:
    result = start(DEBUG=typo, SECRET_KEY="x" * 50)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DEBUG must be true or false" in result.stderr


def test_secret_key_is_read_from_secret_key_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret_key"
    secret_file.write_text("from-a-mounted-file-0123456789abcdefghijklmnop\n", encoding="utf-8")

    result = start(SECRET_KEY_FILE=str(secret_file), HOOKPOST_ENCRYPTION_KEY=Fernet.generate_key().decode())

    assert result.returncode == 0, result.stderr
    assert "DEBUG=False" in result.stdout
    assert "SECRET_KEY=from-a-mounted-file-0123456789abcdefghijklmnop\n" in result.stdout


def test_production_without_an_encryption_key_refuses_to_start() -> None:
    result = start(SECRET_KEY="x" * 50)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "HOOKPOST_ENCRYPTION_KEY is not set" in result.stderr
    assert "Fernet.generate_key()" in result.stderr  # says how to make one


def test_production_with_a_malformed_encryption_key_refuses_to_start() -> None:
    result = start(SECRET_KEY="x" * 50, HOOKPOST_ENCRYPTION_KEY="not-a-fernet-key")

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "HOOKPOST_ENCRYPTION_KEY must be comma-separated Fernet keys" in result.stderr


def test_the_encryption_key_is_read_from_its_file(tmp_path: Path) -> None:
    key_file = tmp_path / "encryption_key"
    key_file.write_text(Fernet.generate_key().decode() + "\n", encoding="utf-8")

    result = start(SECRET_KEY="x" * 50, HOOKPOST_ENCRYPTION_KEY_FILE=str(key_file))

    assert result.returncode == 0, result.stderr
    assert "DEBUG=False" in result.stdout


def test_debug_true_starts_without_an_encryption_key() -> None:
    # development may keep secrets in plaintext; `make run` still makes a key
    result = start(DEBUG="true")

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("HOOKPOST_BREAKER_FAILURE_RATE", "abc", "must be a number"),
        ("HOOKPOST_RETRY_JITTER", "nan", "must be a finite number"),
        ("HOOKPOST_RETRY_SCHEDULE", "5,x", "must be comma-separated integers"),
        ("HOOKPOST_DEFAULT_TIMEOUT_SECONDS", "1.5", "must be an integer"),
    ],
)
def test_a_setting_that_does_not_parse_stops_the_process_naming_its_variable(
    name: str, value: str, says: str
) -> None:
    result = start(DEBUG="true", **{name: value})

    assert result.returncode != 0
    assert f"ImproperlyConfigured: {name} {says}, got {value!r}" in result.stderr


def test_number_settings_read_their_variables() -> None:
    result = start(
        "import django; from django.conf import settings; django.setup(); "
        "print(settings.HOOKPOST_BREAKER_FAILURE_RATE, settings.HOOKPOST_RETRY_SCHEDULE)",
        DEBUG="true",
        HOOKPOST_BREAKER_FAILURE_RATE="0.25",
        HOOKPOST_RETRY_SCHEDULE="1, 2,3",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-2] == "0.25 [1, 2, 3]"


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python manage.py *args`` with only ``env`` set (a shell holding PATH, as by hand)."""
    return process_groups.run(
        [sys.executable, "manage.py", *args], cwd=PROJECT_DIR, env={"PATH": os.defpath, **env}, timeout=60
    )


SHOW = (
    "from django.conf import settings; "
    "print(settings.DEBUG, settings.SECRET_KEY, settings.HOOKPOST_ENCRYPTION_KEY)"
)


def _shown(result: subprocess.CompletedProcess[str]) -> str:
    """What ``SHOW`` printed: the shell's last line (it announces its imports first)."""
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""


def test_manage_py_fills_in_from_the_dotenv_file_what_the_environment_leaves_unset(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("# written by make run\nDEBUG=true\nSECRET_KEY=from-the-dotenv-file\n")

    from_file = manage("shell", "-c", SHOW, HOOKPOST_DOTENV=str(dotenv))
    environment_wins = manage(
        "shell", "-c", SHOW, HOOKPOST_DOTENV=str(dotenv), SECRET_KEY="from-the-environment"
    )

    assert _shown(from_file).startswith("True from-the-dotenv-file"), from_file.stderr
    assert f"settings from {dotenv}: DEBUG, SECRET_KEY" in from_file.stderr
    assert _shown(environment_wins).startswith("True from-the-environment"), environment_wins.stderr
    assert f"settings from {dotenv}: DEBUG\n" in environment_wins.stderr


def test_a_key_in_the_environment_wins_over_a_key_file_named_in_the_dotenv_file(tmp_path: Path) -> None:
    environment_key, file_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    (tmp_path / "encryption-key").write_text(file_key)
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"DEBUG=true\nHOOKPOST_ENCRYPTION_KEY_FILE={tmp_path / 'encryption-key'}\n")

    result = manage("shell", "-c", SHOW, HOOKPOST_DOTENV=str(dotenv), HOOKPOST_ENCRYPTION_KEY=environment_key)

    assert _shown(result).endswith(environment_key), result.stderr
    assert "HOOKPOST_ENCRYPTION_KEY_FILE" not in result.stderr


def test_servers_and_workers_never_read_the_dotenv_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DEBUG=true\n")

    # gunicorn and celery import the settings without manage.py
    result = start(HOOKPOST_DOTENV=str(tmp_path / ".env"))

    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
