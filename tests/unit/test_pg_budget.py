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
        extra = [psycopg.connect(**server, dbname=database["NAME"]) for _ in range(3)]  # type: ignore[arg-type]  # keywords of libpq
        wait_until(lambda: sampler.peak.connections >= 4, timeout=10, what="the sampler to see 4 backends")
        for conn in extra:
            conn.close()
    finally:
        sampler.stopped.set()
        sampler.join(5)

    # The test's own connection and the three extra ones; the sampler's is on another database.
    assert sampler.peak.connections == 4
    assert sampler.peak.by_database == f"{database['NAME']} 4"
