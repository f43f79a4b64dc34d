"""What the benchmarks' smoke tests share: a PostgreSQL database of their own, or a skip."""

from __future__ import annotations

import os
import urllib.parse

import pytest


@pytest.fixture
def bench_database_url(request: pytest.FixtureRequest) -> str:
    """The test run's PostgreSQL server, with a database of this smoke test's own (the
    benchmark makes it and drops it); skips on SQLite."""
    parts = urllib.parse.urlsplit(os.environ.get("DATABASE_URL", ""))
    if parts.scheme not in {"postgres", "postgresql"}:
        pytest.skip("the benchmarks run against PostgreSQL: set DATABASE_URL to a postgres:// URL")
    name = f"lockerhub_bench_smoke_{request.node.name[:20].lower()}_{os.getpid()}"
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))
