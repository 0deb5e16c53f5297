"""After an e2e run, /metrics (web) and the worker's metrics port show the
counters moved by exactly what happened."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from tests.e2e.helpers import assert_ledger, publish, register_endpoint, wait_until
from tests.e2e.receiver import Receiver, Reply
from tests.unit.test_metrics import _value

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_counters_move_by_the_right_amounts(
    pool, make_worker, receiver: Receiver, e2e_settings, make_client, tenant, event_type, client, tmp_path
):
    # prefork's children count in their own processes: they share PROMETHEUS_MULTIPROC_DIR
    pool_env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus")} if pool == "prefork" else {}
    if pool_env:
        (tmp_path / "prometheus").mkdir()
    port = _free_port()
    api = make_client(tenant).client
    receiver.script("/ok", Reply(200))
    receiver.script("/flaky", Reply(500), Reply(200))
    ok = register_endpoint(api, tenant, receiver, "/ok", event_types=[event_type.name])
    flaky = register_endpoint(
        api, tenant, receiver, "/flaky", event_types=[event_type.name], retry_schedule=[1]
    )
    route = "api/v1/tenants/<str:uid>/messages/"
    api_before = _value(
        client.get("/metrics").content.decode(),
        "hookpost_api_requests_total",
        route=route,
        method="POST",
        status="202",
    )
    make_worker(pool=pool, concurrency=2, extra_env={"HOOKPOST_WORKER_METRICS_PORT": str(port), **pool_env})

    messages = [publish(api, tenant, event_type, {"n": n}) for n in range(2)]
    assert_ledger(receiver, messages, [ok, flaky])

    def counted_all() -> str | None:
        text: str = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        return text if _value(text, "hookpost_attempts_total", outcome="succeeded", tenant="") >= 4 else None

    # The counters move just after the commit the ledger saw: wait for the last one.
    worker_text = wait_until(counted_all, 5, "the worker's counters")
    # 2 messages x 2 endpoints succeeded; the flaky endpoint's first request got a 500.
    assert _value(worker_text, "hookpost_attempts_total", outcome="succeeded", tenant="") == 4
    assert _value(worker_text, "hookpost_attempts_total", outcome="failed", tenant="") == 1
    assert _value(worker_text, "hookpost_attempt_duration_seconds_count") == 5
    assert _value(worker_text, "hookpost_scheduler_dispatched_total", queue="retry") >= 1
    web_text = client.get("/metrics").content.decode()
    assert (
        _value(web_text, "hookpost_api_requests_total", route=route, method="POST", status="202")
        == api_before + 2
    )
    assert _value(web_text, "hookpost_deliveries_pending") == 0
