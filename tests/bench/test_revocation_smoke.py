"""The revocation benchmark runs end to end: a few connected banks, a few revocations through
the real actions, each reaching every bank's own decision. Its figures are not checked."""

from __future__ import annotations

import re

import pytest
from django.conf import settings

from bench.revocation import main

pytestmark = pytest.mark.slow


def test_every_revocation_reaches_every_bank_and_is_timed(capsys, bench_database_url):
    status = main(
        [
            "--banks", "3", "--revocations", "10", "--gap", "0.05", "--processes", "1",
            "--database-url", bench_database_url, "--redis-url", settings.REDIS_URL,
        ]
    )  # fmt: skip

    out = capsys.readouterr().out
    assert re.search(r"revocations\s+10 \(5 badges revoked, 5 people offboarded\)", out), out
    assert re.search(r"reached every bank\s+10 of 10", out), out
    for figure in ("p50", "p99", "max"):
        assert re.search(rf"latency {figure} ms\s+\d+", out), out
    assert re.search(r"goal p99 <= 1000 ms at every bank\s+(met|NOT met)", out), out
    assert status == 0
