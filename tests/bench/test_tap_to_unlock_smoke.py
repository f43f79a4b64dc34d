"""The tap-to-unlock benchmark runs end to end on a small load: banks connect, take in their
snapshot, decide every tap themselves and unlock; the floor run does the same without deciding;
and with the server stopped mid-load every tap still unlocks and every event is applied
exactly once after it comes back.

They need PostgreSQL (the benchmark makes its own database on the same server as the test
run's) and start real processes, so they are marked slow. The figures are not checked: speed
is reported by the benchmark, never asserted by a test.
"""

from __future__ import annotations

import re

import pytest
from django.conf import settings

from bench.tap_to_unlock import main

pytestmark = pytest.mark.slow


def run_small(capsys, database_url: str, *extra: str) -> tuple[int, str]:
    """2 banks at 4 taps/s on the test run's PostgreSQL; (exit status, printout)."""
    status = main(
        [
            "--banks", "2", "--rate", "4", "--warmup", "1", "--processes", "1",
            "--database-url", database_url, "--redis-url", settings.REDIS_URL, *extra,
        ]
    )  # fmt: skip
    return status, capsys.readouterr().out


def section(out: str, title: str) -> str:
    """The lines of one printed table, from its title to the next blank line."""
    start = out.index(title)
    end = out.find("\n\n", start)
    return out[start : end if end >= 0 else len(out)]


def test_real_and_floor_runs_print_percentiles_and_their_ratio(capsys, bench_database_url):
    status, out = run_small(capsys, bench_database_url, "--duration", "3")

    for kind in ("real", "floor"):
        table = section(out, f"tap-to-unlock benchmark: {kind}")
        for figure in ("p50", "p95", "p99"):
            assert re.search(rf"latency {figure} ms\s+\d+\.\d", table), table
        assert re.search(r"taps sent \(measured\)\s+12 in 3 s", table), table
        assert re.search(r"^unlocks\s+12 ", table, re.MULTILINE), table
        assert re.search(r"^failures\s+0 ", table, re.MULTILINE), table
        assert re.search(r"^denials\s+0 ", table, re.MULTILINE), table
        # Where the CPU went: the server, PostgreSQL, the load itself and the whole machine.
        for figure in ("server", "PostgreSQL", "load processes", "machine"):
            assert re.search(rf"{figure} CPU ms per tap\s+\d+\.\d", table), table
    comparison = section(out, "real worker against the floor")
    assert re.search(r"ratio p99\(real\)/p99\(floor\)\s+\d+\.\d\d", comparison), comparison
    assert re.search(r"^goal .*: (met|NOT met)$", comparison, re.MULTILINE), comparison
    assert status == 0


def test_taps_unlock_through_an_outage_and_apply_exactly_once(capsys, bench_database_url):
    # The server is away from 2 s into the load for 5 s; the load goes on 5 s after.
    status, out = run_small(
        capsys, bench_database_url, "--duration", "3", "--outage", "5", "--outage-at", "2"
    )

    table = section(out, "tap-to-unlock benchmark: outage")
    down = int(re.search(r"^taps while it was down\s+(\d+)", table, re.MULTILINE).group(1))
    assert down >= 15, table  # 4 taps/s for 5 s, however long Daphne takes to stop and start
    assert re.search(rf"^  unlocked\s+{down}$", table, re.MULTILINE), table
    assert re.search(r"^  failed taps\s+0 ", table, re.MULTILINE), table
    assert re.search(r"^failures\s+0 ", table, re.MULTILINE), table

    check = section(out, "exactly-once check")
    journaled = int(re.search(r"taps journaled by the workers\s+(\d+)", check).group(1))
    assert journaled >= 48, check  # 4 taps/s for the 12 s load and the warm-up
    assert re.search(rf"access events in the database\s+{journaled}$", check, re.MULTILINE)
    assert re.search(r"duplicate access events \(bank, at, uid\)\s+0$", check, re.MULTILINE)
    assert re.search(r"last_event_seq = journal's last seq\s+2 of 2", check), check
    assert re.search(r"access events = taps journaled\s+2 of 2", check), check
    events = re.search(r"events journaled / applied \(all banks\)\s+(\d+) / (\d+)", check)
    assert events.group(1) == events.group(2), check
    assert re.search(r"events left unacknowledged\s+0$", check, re.MULTILINE), check
    assert re.search(r"^exactly once\s+yes$", check, re.MULTILINE), check
    assert status == 0
