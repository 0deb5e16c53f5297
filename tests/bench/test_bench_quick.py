"""Smoke test of the benchmark: ``python -m bench --smoke`` end to end.

It runs every measurement with the smallest sizes (about 3-4 minutes: real
nginx with its echo module, Celery workers, gunicorn, the django-webhook venv,
the aiohttp reference sender), writes the report
into a temporary directory (never docs/), and checks that the ledger lost
nothing. Figures are not asserted: timing belongs to ``make bench``, not tests.

The benchmark runs in a process group of its own that is stopped, with all it
started, however the test ends. It installs nothing: without the django-webhook
venv (``make bench-djw``, which ``make test`` runs first) it runs ``--skip-djw``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from bench.baselines import DJW_MISSING, djw_python
from bench.env import ROOT, which
from tests.e2e.processes import process_group

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(which("nginx") is None, reason="nginx is not installed (make bench-deps)"),
]

TIMEOUT_SECONDS = 480


def _smoke_database_url() -> str:
    """A database of the smoke test's own, beside the suite's (the bench drops and recreates it)."""
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/hookpost_benchtest")
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    name = f"{name}_smoke" if "bench" in name else "hookpost_bench_smoke"
    return urlunsplit(parts._replace(path=f"/{name}"))


def test_smoke_run_loses_nothing_and_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "report"
    log = tmp_path / "bench.log"
    with_djw = djw_python() is not None
    if not with_djw:
        warnings.warn(f"smoke run without django-webhook: {DJW_MISSING}", stacklevel=1)
    command = [
        sys.executable, "-m", "bench", "--smoke", "--profile",
        "--out", str(out),
        "--workdir", str(tmp_path / "work"),
        "--database-url", _smoke_database_url(),
        "--redis-url", os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/12"),
        *([] if with_djw else ["--skip-djw"]),
    ]  # fmt: skip
    # On any exit, SIGTERM lets the benchmark stop what it started; a minute later SIGKILL
    # goes to its group, and its own watchdog stops the rest.
    with process_group(command, cwd=ROOT, env=os.environ, log=log, grace=60) as proc:
        try:
            returncode = proc.wait(TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the smoke run took over {TIMEOUT_SECONDS} s:\n{log.read_text()[-3000:]}")
    assert returncode == 0, log.read_text()[-6000:]
    data = json.loads((out / "benchmarks.json").read_text())
    assert data["ledger"]["ok"] and data["ledger"]["totals"]["lost"] == 0, data["ledger"]
    assert data["ledger"]["totals"]["expected"] > 0
    assert not data["errors"], data["errors"]
    assert (out / "BENCHMARKS.md").read_text().startswith("# Benchmarks")
    assert (out / "benchmarks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    figures = ["floor_per_s", "naive_per_s", "e2e_per_s", "fanout_per_s", "latency_p99_ms"]
    for key in [*figures, "djw_per_s"] if with_djw else figures:
        assert data["figures"][key] > 0, key
    assert with_djw or data["skipped"] == ["django-webhook (--skip-djw)"]
    # isolation ran as pairs, each "with" run over its own "without" run
    assert len(data["isolation_pairs"]) == 1 and data["isolation_pairs"][0]["throughput_ratio"] > 0
    assert "Isolation is measured in 1 pair," in (out / "BENCHMARKS.md").read_text()
    # and each of its runs was metered: whose CPU it used, by process group (the figures are
    # the machine's; tests/unit/test_bench_cpu.py tests the accounting)
    assert set(data["isolation_cpu"]) == {"without", "with", "without latency", "with latency"}
    assert all("first-lane workers" in shares[0] for shares in data["isolation_cpu"].values())
    assert "CPU during the isolation runs" in (out / "BENCHMARKS.md").read_text()
    # the backlog run wrote its pending rows and sampled the worker's memory while it worked
    backlog = data["backlog"]
    assert backlog["pending"] == 2000 and backlog["rss_start_kb"] > 0 and backlog["delivered"] > 0, backlog
    assert backlog["duplicates"] == 0
    # the receivers that wait: Hookpost's two shapes beside the reference sender at 50 and 200 ms
    for delay in (50, 200):
        node = data[f"latency_{delay}"]
        assert node["cap"] > 0 and node["cap_bound_per_s"] == node["cap"] * 1000 / delay, node
        for kind in ("reference", "spread", "backlogged"):
            (run,) = node[kind]["runs"]
            assert run["deliveries_per_s"] > 0 and run["lost"] == 0, (delay, kind, run)
            assert run["max_open"] >= 1, (delay, kind, run)
        assert "cpu_sender" in node["reference"]["runs"][0] and node["reference"]["runs"][0]["failed"] == 0
        assert data["ratios"][f"latency{delay}_over_reference"] > 0
        assert data["ratios"][f"latency{delay}_backlog_over_cap"] > 0
    assert data["verdicts"]["latency200_backlog_over_cap"] in {"met", "NOT met"}
    assert "against the targets of issue 18" in (out / "BENCHMARKS.md").read_text()
    # --profile sampled the worker and named where its time went, our engine among it
    top = [name for _, name in data["profile"]["top"]]
    assert any("deliveries/engine.py" in name for name in top), top
    assert "## Profile" in (out / "BENCHMARKS.md").read_text()
