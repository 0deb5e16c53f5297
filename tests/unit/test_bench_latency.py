"""The latency-D steps' arithmetic: run sizes, one endpoint's bound, what nginx's log says
was open at once, and the ratios and verdicts the report shows against issue 18's targets."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from bench import latency, report
from bench.hookpost import Tenant
from bench.receivers import WAIT_DELAYS_MS, Arrival, Nginx, max_open


def _arrival(end: float, seconds: float, connection: int = 1, wid: str = "m") -> Arrival:
    return Arrival(
        at=end, webhook_id=wid, path="/wait/50/x", status=204, seconds=seconds, connection=connection
    )


def test_one_endpoint_is_bounded_by_its_cap_over_the_delay():
    assert latency.cap_bound_per_s(10, 200) == 50.0
    assert latency.cap_bound_per_s(10, 50) == 200.0


def test_a_run_is_the_same_seconds_of_work_at_its_bound_whatever_the_delay():
    # 200 in flight for 1.5 s at 50 ms: 6,000; cap 10 for 10 s at 200 ms: 500
    assert latency.run_sizes(50, 10, spread_seconds=1.5, backlog_seconds=10) == (6000, 2000)
    assert latency.run_sizes(200, 10, spread_seconds=1.5, backlog_seconds=10) == (1500, 500)
    # never fewer than one message per endpoint, or than the cap
    assert latency.run_sizes(200, 10, spread_seconds=0.001, backlog_seconds=0.001) == (100, 10)


def test_max_open_counts_overlapping_requests():
    # three requests of 50 ms starting 10 ms apart overlap; a fourth starts after all ended
    arrivals = [
        _arrival(100.050, 0.05),
        _arrival(100.060, 0.05),
        _arrival(100.070, 0.05),
        _arrival(100.5, 0.05),
    ]
    assert max_open(arrivals) == 3
    assert max_open([]) == 0


def test_a_request_that_begins_as_another_ends_on_its_connection_is_not_counted_twice():
    back_to_back = [_arrival(100.050, 0.05), _arrival(100.100, 0.05), _arrival(100.150, 0.05)]
    assert max_open(back_to_back) == 1


def test_receiver_figures_say_how_many_were_open_on_average_and_over_how_many_connections():
    # 10 requests of 200 ms, 5 at a time on 5 connections, over 0.4 s: 5 open on average
    arrivals = [_arrival(100.2 + 0.2 * (i // 5), 0.2, connection=i % 5) for i in range(10)]
    figures = latency.receiver_figures(arrivals)
    assert figures["max_open"] == 5
    assert figures["mean_open"] == pytest.approx(5.0)
    assert figures["connections"] == 5


def test_a_spread_tenant_owes_each_message_to_one_endpoint_in_turn():
    tenant = Tenant(model=None, paths=["/a", "/b"], event_types=["t.0", "t.1"])
    accepted = [("m0", 0.0), ("m1", 0.0), ("m2", 0.0)]
    assert tenant.expected(accepted) == [("m0", "/a"), ("m1", "/b"), ("m2", "/a")]
    assert [tenant.event_type(i) for i in range(3)] == ["t.0", "t.1", "t.0"]
    assert tenant.messages_for(500) == 500


def test_a_spread_tenant_sends_runs_of_consecutive_messages_to_each_endpoint():
    tenant = Tenant(model=None, paths=["/a", "/b"], event_types=["t.0", "t.1"], run_length=2)
    accepted = [(f"m{i}", 0.0) for i in range(5)]
    assert [path for _, path in tenant.expected(accepted)] == ["/a", "/a", "/b", "/b", "/a"]
    assert [tenant.event_type(i) for i in range(5)] == ["t.0", "t.0", "t.1", "t.1", "t.0"]


def test_a_fan_out_tenant_owes_every_message_to_every_endpoint():
    tenant = Tenant(model=None, paths=["/a", "/b"])
    assert tenant.expected([("m0", 0.0)]) == [("m0", "/a"), ("m0", "/b")]
    assert tenant.messages_for(500) == 250


def test_nginx_logs_request_time_and_connection_and_parses_them():
    line = b"1700000000.250\tmsg_1\t/wait/50/spread/3\t204\t0.051\t17\t\n"
    (arrival,) = Nginx._parse(line)
    assert arrival == Arrival(1700000000.25, "msg_1", "/wait/50/spread/3", 204, 0.051, 17)


def test_the_waiting_receivers_are_configured_only_with_the_echo_module(tmp_path: Path):
    nginx = Nginx(tmp_path)
    nginx.echo = tmp_path / "ngx_http_echo_module.so"
    config = nginx.config()
    assert config.startswith(f"load_module {nginx.echo};")
    for delay in WAIT_DELAYS_MS:
        assert f"location /wait/{delay}/ {{ echo_sleep {delay / 1000:g}; echo_status 204; }}" in config
    assert nginx.wait_url(200, "/backlog").endswith("/wait/200/backlog")

    nginx.echo = None
    assert "echo_sleep" not in nginx.config() and "load_module" not in nginx.config()
    with pytest.raises(RuntimeError, match="make bench-deps"):
        nginx.wait_url(50, "/x")


def _results(reference: float, spread: float, backlogged: float, delay: int) -> dict[str, Any]:
    def runs(value: float) -> dict[str, Any]:
        return {"median": {"deliveries_per_s": value}, "runs": [{"deliveries_per_s": value}]}

    return {
        "delay_ms": delay,
        "cap": 10,
        "cap_bound_per_s": latency.cap_bound_per_s(10, delay),
        "reference": runs(reference),
        "spread": runs(spread),
        "backlogged": runs(backlogged),
    }


def test_ratios_are_hookpost_over_the_reference_and_backlogged_over_cap_per_delay():
    results = {"latency_50": _results(2000, 1500, 150, 50), "latency_200": _results(900, 300, 46, 200)}
    rat = report.ratios(report.figures(results))
    assert rat["latency50_over_reference"] == pytest.approx(0.75)
    assert rat["latency200_over_reference"] == pytest.approx(1 / 3)
    assert rat["latency50_backlog_over_cap"] == pytest.approx(0.75)  # 150 of 10 / 50 ms
    assert rat["latency200_backlog_over_cap"] == pytest.approx(0.92)  # 46 of 10 / 200 ms
    verdict = report.verdicts(rat)
    assert verdict["latency50_over_reference"] == "met"
    assert verdict["latency200_over_reference"] == "NOT met"
    assert verdict["latency200_backlog_over_cap"] == "met"


def test_steps_that_did_not_run_are_not_measured_rather_than_failed():
    rat = report.ratios(report.figures({}))
    assert math.isnan(rat["latency50_over_reference"])
    assert report.verdicts(rat)["latency200_backlog_over_cap"] == "not measured"


def test_the_report_shows_issue_18s_targets_and_the_figures_behind_them():
    results = {"latency_50": _results(2000, 1500, 150, 50), "latency_200": _results(900, 300, 46, 200)}
    fig = report.figures(results)
    rat = report.ratios(fig)
    lines = "\n".join(report._latency(fig, rat, report.verdicts(rat)))
    assert "against the targets of issue 18" in lines
    assert (
        "| receiver waits 200 ms, 100 endpoints 1:1: Hookpost ÷ reference sender | 0.33 | ≥ 0.7 | NOT met |"
        in lines
    )
    assert (
        "| receiver waits 200 ms, one backlogged endpoint: Hookpost ÷ (cap ÷ D) | 0.92 | ≥ 0.9 | met |"
        in lines
    )
    assert "| cap ÷ D (cap 10), deliveries/s | 200.0 | 50.0 |" in lines
