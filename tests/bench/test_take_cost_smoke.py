"""The server-cost benchmark runs a take and a return through the device consumer and reports
every event. Its figures are not checked (speed is reported, never asserted); that every event
was measured, and the statement counts, are."""

from __future__ import annotations

import json

import pytest

from bench.take_cost import EVENTS, main

pytestmark = pytest.mark.slow


def test_every_event_of_a_take_and_a_return_is_measured(tmp_path, capsys) -> None:
    out_file = tmp_path / "cost.json"

    status = main(
        ["--cycles", "2", "--warmup", "1", "--database-url", "sqlite", "--json", str(out_file)]
    )

    out = capsys.readouterr().out
    assert status == 0
    report = json.loads(out_file.read_text())
    assert report["vendor"] == "sqlite"
    assert report["taps"] == 4
    assert list(report["events"]) == list(EVENTS)
    events = report["events"]
    statements = {name: figures["statements"] for name, figures in events.items()}
    # The tap the bank decided is recorded, re-checked and held: the most work of the four.
    assert statements["tap"] == max(statements.values())
    assert statements["tap"] > 5
    # A presence change only moves the slot's state; the door events end or start a hold.
    assert statements["presence"] == min(statements.values())
    for name in EVENTS:
        assert f"\n{name} " in out, out
    assert "per tap" in out
