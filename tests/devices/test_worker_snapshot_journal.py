"""The access snapshot at the bank: verified, stored verbatim in the journal, kept current by
deltas, and verified again at every start.

A snapshot or delta with a bad signature, for another bank, or not newer than the one held is
refused and the old one kept; a delta that does not follow the version held makes the worker
ask for the whole snapshot; a journal entry tampered with gives no snapshot at all.
"""

from __future__ import annotations

import logging
import sqlite3

from access import core
from devices.worker_journal import SignedEntry
from tests.devices import test_worker_support as support
from tests.devices.test_worker_support import (
    ANA,
    CLEO,
    OTHER_KEY,
    UID_KEY,
    holder_data,
    signed,
    world,
)

emulator = support.emulator
bus = support.bus
server = support.server
journal_path = support.journal_path
start_worker = support.start_worker


def last_sent(server, kind: str) -> dict:
    return [m for m in server.sent if m["type"] == kind][-1]


def entry(message: dict, kind: str) -> SignedEntry:
    return SignedEntry(kind, message["data"], message["sig"])


def wait_logged(caplog, text: str) -> None:
    support.wait_until(lambda: text in caplog.text, what=f"{text!r} in the log")


def test_the_signed_snapshot_and_its_deltas_are_kept_verbatim(server, start_worker):
    runner = start_worker(server)
    worker = runner.worker
    support.ready(server, worker)
    snapshot = last_sent(server, "access_snapshot")
    assert worker.journal.access_entries() == [entry(snapshot, "snapshot")]
    version = server.send_delta({"holders": {"1": holder_data("Ana", max_loans=2)}})
    support.wait_version(worker, version)
    delta = last_sent(server, "access_delta")
    assert worker.journal.access_entries() == [
        entry(snapshot, "snapshot"),
        entry(delta, "delta"),
    ]
    assert worker.state.snapshot.holders[1].rules[0].max_concurrent == 2
    # A whole snapshot replaces the snapshot and its deltas.
    server.send(server.whole_snapshot())
    support.wait_version(worker, server.version)
    assert worker.journal.access_entries() == [
        entry(last_sent(server, "access_snapshot"), "snapshot")
    ]
    runner.stop()


def test_a_restarted_worker_decides_from_its_journal_and_says_which_version_it_holds(
    server, start_worker
):
    first = start_worker(server)
    support.ready(server, first.worker)
    version = server.send_delta({"holders": {"3": holder_data("Cleo")}})  # Cleo is back
    support.wait_version(first.worker, version)
    first.stop()
    server.shutdown()
    # No server now: the snapshot and the delta from the journal, signatures checked again.
    second = start_worker()
    assert second.worker.snapshot_version == version
    support.wait_configured(second.worker)  # from the journal's config too
    assert second.worker.submit_badge(CLEO).reason == "granted_take"
    second.stop()
    server.start()
    third = start_worker(server)
    server.wait_connections(2)
    hello = server.of_type("hello")[-1]
    assert hello["snapshot_version"] == version
    third.stop()


def test_a_delta_revokes_a_badge_at_once(server, start_worker):
    runner = start_worker(server)
    support.ready(server, runner.worker)
    revoked = [1, "revoked", 0.0, None, ""]
    version = server.send_delta({"badges": {core.hash_uid(UID_KEY, ANA): revoked}})
    support.wait_version(runner.worker, version)
    tap = runner.worker.submit_badge(ANA)
    assert (tap.granted, tap.reason) == (False, "badge_revoked")
    (event,) = server.wait_for("tap", seq=tap.seq)
    assert event["version"] == version
    runner.stop()


def test_a_snapshot_tampered_with_in_transit_is_refused_and_the_old_one_kept(
    server, start_worker, caplog
):
    caplog.set_level(logging.ERROR, logger="devices.worker")
    runner = start_worker(server)
    worker = runner.worker
    support.ready(server, worker)
    held = worker.snapshot_version
    kept = worker.journal.access_entries()
    message = server.whole_snapshot()
    # Cleo let back in by someone on the wire; the signature is the server's, of other text.
    message["data"] = message["data"].replace('"suspended"', '"active"')
    server.send(message)
    wait_logged(caplog, "bad signature")
    # A delta signed with another key fares no better.
    changed = {**world(version=server.version + 1), "holders": {"3": holder_data("Cleo")}}
    forged = signed("access_delta", core.make_delta(world(version=held), changed), OTHER_KEY)
    server.send(forged)
    support.wait_until(lambda: caplog.text.count("bad signature") == 2)
    assert worker.snapshot_version == held
    assert worker.journal.access_entries() == kept
    assert worker.submit_badge(CLEO).reason == "employee_suspended"
    runner.stop()


def test_a_snapshot_for_another_bank_or_not_newer_is_refused(server, start_worker, caplog):
    caplog.set_level(logging.ERROR, logger="devices.worker")
    runner = start_worker(server)
    worker = runner.worker
    support.ready(server, worker)
    held = worker.snapshot_version
    kept = worker.journal.access_entries()
    server.send(signed("access_snapshot", world(version=held + 10, bank="BANK-B")))
    wait_logged(caplog, "signed for bank 'BANK-B'")
    server.send(signed("access_snapshot", world(version=held)))
    wait_logged(caplog, f"version {held} is not newer than {held}")
    server.send(signed("access_snapshot", world(version=held - 1)))
    wait_logged(caplog, f"version {held - 1} is not newer than {held}")
    assert worker.snapshot_version == held
    assert worker.journal.access_entries() == kept
    runner.stop()


def test_a_delta_on_another_base_asks_for_the_whole_snapshot(server, start_worker):
    runner = start_worker(server)
    worker = runner.worker
    support.ready(server, worker)
    held = worker.snapshot_version
    server.send_delta({"holders": {"3": holder_data("Cleo")}}, base_version=held + 5)
    server.wait_for("snapshot_request")
    # The server answers with the whole snapshot, which has Cleo's change too.
    support.wait_version(worker, server.version)
    assert worker.snapshot_version > held + 1
    assert [e.kind for e in worker.journal.access_entries()] == ["snapshot"]
    assert worker.submit_badge(CLEO).reason == "granted_take"
    runner.stop()


def test_a_tampered_journal_entry_is_refused_at_start_up(
    emulator, server, start_worker, journal_path, caplog
):
    support.journal_world(journal_path, world(version=3))
    with sqlite3.connect(journal_path) as db:
        (data,) = db.execute("SELECT data FROM access").fetchone()
        db.execute("UPDATE access SET data = ?", (data.replace('"suspended"', '"active"'),))
    db.close()
    caplog.set_level(logging.ERROR, logger="devices.worker")
    server.access = None  # the server is slow to send a snapshot
    runner = start_worker(server)
    assert "access snapshot in the journal" in caplog.text
    assert "bad signature" in caplog.text
    assert runner.worker.snapshot_version is None
    support.snapshot_of(server)
    assert server.of_type("hello")[0]["snapshot_version"] is None
    assert runner.worker.submit_badge(ANA).reason == "bank_not_ready"
    assert emulator.unlock_log == []
    # Once the server sends one, taps are decided again.
    server.access = world()
    server.drop()
    server.wait_connections(2)
    support.wait_version(runner.worker, 1)
    assert runner.worker.submit_badge(ANA).reason == "granted_take"
    runner.stop()


def test_a_tampered_delta_in_the_journal_spoils_the_whole_snapshot(
    server, start_worker, journal_path, caplog
):
    first = start_worker(server)
    support.ready(server, first.worker)
    version = server.send_delta({"holders": {"1": holder_data("Ana", status="suspended")}})
    support.wait_version(first.worker, version)
    first.stop()
    server.shutdown()
    with sqlite3.connect(journal_path) as db:
        db.execute(
            "UPDATE access SET data = replace(data, '\"suspended\"', '\"active\"')"
            " WHERE kind = 'delta'"
        )
    db.close()
    caplog.set_level(logging.ERROR, logger="devices.worker")
    second = start_worker()
    assert second.worker.snapshot_version is None  # not the snapshot before the delta either
    assert second.worker.submit_badge(ANA).reason == "bank_not_ready"
    assert "bad signature" in caplog.text
    second.stop()


def test_without_the_servers_key_no_snapshot_is_trusted(emulator, server, start_worker, caplog):
    caplog.set_level(logging.ERROR, logger="devices.worker")
    runner = start_worker(server, server_key=None)
    support.snapshot_of(server)
    wait_logged(caplog, "no server key")
    assert runner.worker.snapshot_version is None
    assert runner.worker.submit_badge(ANA).reason == "bank_not_ready"
    assert emulator.unlock_log == []
    runner.stop()
