"""The tap-to-unlock benchmark runs end to end on a small load: banks connect, every tap unlocks.

It needs PostgreSQL (the benchmark makes its own database on the same server as the test
run's) and starts real processes, so it is marked slow. Its figures are not checked: speed
is reported by the benchmark, never asserted by a test.
"""

from __future__ import annotations

import os
import re
import urllib.parse

import pytest
from django.conf import settings

from bench.tap_to_unlock import main

pytestmark = pytest.mark.slow


def bench_database_url() -> str | None:
    """The test run's PostgreSQL server, with a database of the smoke test's own."""
    url = os.environ.get("DATABASE_URL", "")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        return None
    return urllib.parse.urlunsplit(parts._replace(path=f"/lockerhub_bench_smoke_{os.getpid()}"))


def run_small(capsys, *extra: str) -> tuple[int, str]:
    """2 banks at 4 taps/s for 3 s on the test run's PostgreSQL; (exit status, printout)."""
    database_url = bench_database_url()
    if database_url is None:
        pytest.skip("the benchmark runs against PostgreSQL: set DATABASE_URL to a postgres:// URL")
    status = main(
        [
            "--banks", "2", "--rate", "4", "--duration", "3", "--warmup", "1", "--processes", "1",
            "--database-url", database_url, "--redis-url", settings.REDIS_URL, *extra,
        ]
    )  # fmt: skip
    return status, capsys.readouterr().out


def test_small_benchmark_prints_percentiles_and_every_tap_unlocks(capsys) -> None:
    status, out = run_small(capsys)

    for figure in ("p50", "p95", "p99"):
        assert re.search(rf"latency {figure} ms\s+\d+\.\d", out), out
    assert re.search(r"taps sent \(measured\)\s+12 in 3 s", out), out
    assert re.search(r"^failures\s+0 ", out, re.MULTILINE), out
    assert re.search(r"^unlocks\s+12 ", out, re.MULTILINE), out
    # Where the CPU went: the server, PostgreSQL, the load itself and the whole machine.
    for figure in ("server", "PostgreSQL", "load processes", "machine"):
        assert re.search(rf"{figure} CPU ms per tap\s+\d+\.\d", out), out
    assert status == 0


def test_the_framework_floor_answers_every_tap_from_memory(capsys) -> None:
    # --server-app floor: Daphne and Channels answer the protocol without the database, so a
    # run shows what the machine does with the server's own work taken away.
    status, out = run_small(capsys, "--server-app", "floor")

    assert re.search(r"load processes / servers\s+1 / 1 \(floor\)", out), out
    assert re.search(r"^unlocks\s+12 ", out, re.MULTILINE), out
    assert re.search(r"^failures\s+0 ", out, re.MULTILINE), out
    assert re.search(r"^denials\s+0 ", out, re.MULTILINE), out
    assert status == 0
