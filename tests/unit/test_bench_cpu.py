"""bench.cpu: CPU time by process group, as the isolation step reports it."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bench.cpu import CpuMeter
from bench.env import Process

_SPIN = "import time\nend = time.time() + 20\nwhile time.time() < end: pass"
_SLEEP = "import time; time.sleep(20)"


def test_a_busy_process_is_charged_to_its_group_and_an_idle_one_is_not(tmp_path: Path):
    spinner = Process("spinner", [sys.executable, "-c", _SPIN], {}, tmp_path / "spin.log")
    sleeper = Process("sleeper", [sys.executable, "-c", _SLEEP], {}, tmp_path / "sleep.log")
    try:
        time.sleep(0.3)  # both started
        with CpuMeter({"spinning": [spinner], "sleeping": [sleeper]}) as meter:
            time.sleep(1.0)
    finally:
        spinner.stop()
        sleeper.stop()
    # a spinning process keeps about one core busy (less on a loaded machine), a sleeping one none
    assert meter.shares["spinning"] > 0.3, meter.shares
    assert meter.shares["sleeping"] < 0.05, meter.shares
    # and the servers and everything else are named too
    assert "harness" in meter.shares and "other" in meter.shares
