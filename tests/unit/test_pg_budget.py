"""The suite's connection sampler (tests/pg_budget.py) counts the backends on its databases."""

from __future__ import annotations

import psycopg
import pytest
from django.conf import settings

from tests.e2e.helpers import wait_until
from tests.pg_budget import ConnectionSampler


@pytest.mark.django_db
def test_the_sampler_keeps_the_peak_of_backends_on_its_databases() -> None:
    database = settings.DATABASES["default"]
    server = {
        "host": database["HOST"] or "127.0.0.1",
        "port": database["PORT"] or 5432,
        "user": database["USER"],
    }
    sampler = ConnectionSampler({**server, "dbname": "postgres"}, [database["NAME"]])
    sampler.start()
    try:
        wait_until(lambda: sampler.samples, timeout=10, what="a first sample")
        before = sampler.peak.connections  # this test's own connection, and any left open
        extra = [psycopg.connect(**server, dbname=database["NAME"]) for _ in range(3)]  # type: ignore[arg-type]  # keywords of libpq
        wait_until(
            lambda: sampler.peak.connections >= before + 3, timeout=10, what="the sampler to see 3 more"
        )
        for conn in extra:
            conn.close()
    finally:
        sampler.stopped.set()
        sampler.join(5)

    # Three more than before; the sampler's own connection is on another database.
    assert before >= 1
    assert sampler.peak.connections == before + 3
    assert sampler.peak.by_database == f"{database['NAME']} {before + 3}"
