"""``manage.py demo_receiver`` as a real process: signed requests get 204 and one
line each, forged ones 401, duplicates are acknowledged once processed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench import process_groups
from tests.receivers.helpers import event_body, signed_headers
from webhooks import signing

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class DemoReceiver:
    process: subprocess.Popen[bytes]
    url: str

    def next_line(self) -> str:
        """The line printed for the last request: the receiver writes and flushes
        it before answering, so it is there once ``post`` returned."""
        assert self.process.stdout is not None
        return self.process.stdout.readline().decode().rstrip("\n")


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@pytest.fixture
def secret_file(tmp_path: Path) -> tuple[Path, list[str]]:
    """A secret file as an operator writes it: a comment and two secrets (mid-rotation)."""
    secrets = [signing.generate_secret(), signing.generate_secret()]
    path = tmp_path / "secrets"
    path.write_text("# demo receiver secrets\n" + "\n".join(secrets) + "\n\n")
    return path, secrets


@pytest.fixture
def receiver(secret_file: tuple[Path, list[str]]) -> Iterator[DemoReceiver]:
    # Standalone, as `make run` will start it: no database, Redis or API key in the environment.
    env = {"PATH": os.environ.get("PATH", ""), "DEBUG": "true", "PYTHONUNBUFFERED": "1"}
    process = process_groups.start(
        [sys.executable, "manage.py", "demo_receiver", "--port", "0", "--secret-file", str(secret_file[0])],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline().decode().strip()  # "listening on http://127.0.0.1:<port>/"
        if not first.startswith("listening on "):
            process_groups.stop(process, signal.SIGKILL, grace=0)
            pytest.fail(f"demo_receiver did not start: {first!r} {process.communicate(timeout=5)}")
        yield DemoReceiver(process, first.removeprefix("listening on "))
    finally:
        process_groups.stop(process)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_demo_receiver_accepts_signed_requests_and_refuses_forged_ones(
    receiver: DemoReceiver, secret_file: tuple[Path, list[str]]
) -> None:
    _, secrets = secret_file
    body = event_body("invoice.paid")

    # A request signed with the receiver's second secret is accepted
    headers = signed_headers(secrets[1], body)
    assert post(receiver.url, body, headers) == 204
    assert receiver.next_line() == f"{headers['webhook-id']} invoice.paid verified OK"

    # A forged one (a stranger's secret) is refused, and its unverified body is not parsed (type '-')
    forged = signed_headers(signing.generate_secret(), body)
    assert post(receiver.url, body, forged) == 401
    assert receiver.next_line().startswith(f"{forged['webhook-id']} - failed: NoMatchingSignature")

    # The signed body re-serialized with other whitespace is refused too
    assert post(receiver.url, event_body("invoice.paid", indent=2), headers) == 401
    assert "failed: NoMatchingSignature" in receiver.next_line()

    # Headers missing -> 401 with the reason
    assert post(receiver.url, body, {}) == 401
    assert receiver.next_line() == (
        "- - failed: MissingHeader: missing header webhook-id, webhook-timestamp, webhook-signature"
    )

    # Hookpost's retry of the accepted message (same webhook-id, new timestamp) is acknowledged once processed
    retry = signed_headers(secrets[0], body, msg_id=headers["webhook-id"], timestamp=int(time.time()) + 1)
    assert post(receiver.url, body, retry) == 204
    assert receiver.next_line() == f"{headers['webhook-id']} invoice.paid duplicate, already processed"


def test_demo_receiver_refuses_a_bad_secret_at_startup(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "DEBUG": "true"}
    result = process_groups.run(
        [sys.executable, "manage.py", "demo_receiver", "--port", "0", "--secret", "whsec_short"],
        cwd=ROOT,
        env=env,
        timeout=60,
    )

    assert result.returncode != 0
    assert "invalid secret" in result.stderr
