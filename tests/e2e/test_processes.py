"""The helper the e2e tests start servers with: a test's own failure is what it
reports, however its process ended, and nothing the process started outlives it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench import process_groups
from tests.e2e.helpers import wait_until
from tests.e2e.processes import process_group, stop_group


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie its new parent has not reaped yet."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _ignores_sigterm(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    ignored = re.search(r"^SigIgn:\s*([0-9a-f]+)$", status, re.MULTILINE)
    return ignored is not None and bool(int(ignored[1], 16) & 1 << (signal.SIGTERM - 1))


def test_a_failure_in_the_block_is_reported_when_the_process_group_is_gone_already(tmp_path: Path) -> None:
    # Given a process that exited, and was reaped, before the block ends
    with pytest.raises(AssertionError, match="the test's own failure"):
        with process_group(
            [sys.executable, "-c", "pass"], cwd=tmp_path, env=os.environ, log=tmp_path / "log"
        ) as proc:
            proc.wait(10)
            # When the test fails
            raise AssertionError("the test's own failure")
    # Then that failure is what the test reports, and the gone group counts as stopped
    assert stop_group(proc)


def test_what_the_process_started_is_stopped_even_when_it_ignores_sigterm(tmp_path: Path) -> None:
    # Given a process that starts a child ignoring SIGTERM, and exits before it
    script = "(trap '' TERM; exec sleep 600) & echo $! > child.pid"
    with process_group(["sh", "-c", script], cwd=tmp_path, env=os.environ, log=tmp_path / "log") as proc:
        proc.wait(10)
        child = int((tmp_path / "child.pid").read_text())
        wait_until(lambda: _ignores_sigterm(child), timeout=5, what=f"process {child} to ignore SIGTERM")
    # When the block ends, then the child is gone too
    wait_until(lambda: _gone(child), timeout=5, what=f"process {child} to exit")


def test_a_command_run_past_its_timeout_is_stopped_with_what_it_started(tmp_path: Path) -> None:
    # Given a command that starts a child and waits for it
    script = "sleep 600 & echo $! > child.pid; wait"

    # When it runs past its timeout
    with pytest.raises(subprocess.TimeoutExpired):
        process_groups.run(["sh", "-c", script], cwd=tmp_path, timeout=1)

    # Then its child is gone too, not only the command
    child = int((tmp_path / "child.pid").read_text())
    wait_until(lambda: _gone(child), timeout=5, what=f"process {child} to exit")
