"""The snapshot-size benchmark builds a small world, measures the whole snapshot, three deltas
and a worker process holding the snapshot. Its figures are not checked, only that each is
measured (and that the deltas carry the change they are about)."""

from __future__ import annotations

import json
import re

import pytest
from django.conf import settings

from bench.snapshot_size import main

pytestmark = pytest.mark.slow


def test_snapshot_deltas_and_worker_memory_are_measured(capsys, tmp_path, bench_database_url):
    out_file = tmp_path / "sizes.json"

    status = main(
        [
            "--badges", "1000", "--banks", "4",
            "--database-url", bench_database_url, "--redis-url", settings.REDIS_URL,
            "--json", str(out_file),
        ]
    )  # fmt: skip

    out = capsys.readouterr().out
    assert status == 0
    assert re.search(r"badges / holders in the snapshot\s+1000 / 1000", out), out
    assert re.search(r"whole snapshot, signed message bytes\s+\d+ ", out), out
    assert re.search(r"whole snapshot built and signed in ms\s+\d+", out), out
    for change in ("badge revoked", "badge issued", "person offboarded"):
        assert re.search(rf"delta after {change}, bytes\s+\d+ ", out), out
    assert re.search(r"worker peak RSS MB holding it\s+\d+\.\d", out), out
    report = json.loads(out_file.read_text())
    revoked, issued, offboarded = (d["entries"] for d in report["deltas"])
    assert revoked == {"badges": 1}
    assert issued["badges"] == 1
    assert offboarded == {"badges": 1, "holders": 1}
    assert report["worker"]["restored"]  # the worker took the snapshot from its journal
    assert report["loans"] == 20
