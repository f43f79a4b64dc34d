"""A bank without its server: taps, takes and returns go on from the journaled snapshot, and
the events reach the server later, in order, with their original times, exactly once.

Past the snapshot's validity new takes are refused (``snapshot_stale``) while returns still
work. Locally a completed take adds the loan to the holder and a completed return removes it,
so limits and returns hold offline, across a restart too, until the server confirms them.
"""

from __future__ import annotations

import time
from datetime import datetime

from devices.emulators.nfc_card import tap
from tests.devices import test_worker_support as support
from tests.devices.test_worker_support import ANA, BEN, HOUR, holder_data, world

emulator = support.emulator
bus = support.bus
server = support.server
journal_path = support.journal_path
start_worker = support.start_worker


def unlocked(emulator) -> list[tuple[int, int]]:
    return [(board, lock) for _, board, lock in emulator.unlock_log]


def pending_of(worker, kind: str) -> list[dict]:
    return [e for e in worker.journal.pending() if e["type"] == kind]


def door_seen_open(worker, slot: int) -> None:
    """Wait until the worker has seen the held door of ``slot`` open."""

    def opened() -> bool:
        hold = worker.state.holds.get(slot)
        return hold is not None and hold.opened

    support.wait_until(opened, what=f"door {slot} to be seen open")


def through_the_door(emulator, worker, slot: int, *, present: bool) -> None:
    """Someone at the open door of ``slot`` takes the device out (or puts it in) and closes
    the door; wait until the worker has ended the hold."""
    door_seen_open(worker, slot)
    emulator.set_present(0, slot - 1, present)
    emulator.close_door(0, slot - 1)
    support.wait_until(lambda: slot not in worker.state.holds, what="the hold to end")


def test_a_granted_tap_unlocks_with_no_server_at_all(emulator, start_worker, journal_path):
    # The journal holds the config and a signed snapshot from an earlier run; the server is
    # nowhere. A card on the real reader (nfcpy's udp driver) opens a door all the same.
    support.journal_world(journal_path, world())
    port = support.free_udp_port()
    runner = start_worker(badge_reader_path=f"udp:127.0.0.1:{port}")
    support.wait_configured(runner.worker)
    tap(port, ANA, hold=0.15)
    support.wait_until(lambda: emulator.unlock_log, what="an unlock")
    assert unlocked(emulator) == [(0, 0)]
    (event,) = pending_of(runner.worker, "tap")
    assert (event["uid"], event["granted"], event["reason"], event["slot"]) == (
        ANA,
        True,
        "granted_take",
        1,
    )
    # The doors were watched from the start: a snapshot of them waits for the server too.
    assert [e["type"] for e in runner.worker.journal.pending()][:2] == ["snapshot", "tap"]
    runner.stop()


def test_an_offline_take_and_return_reach_the_server_in_order_once_with_their_times(
    emulator, server, start_worker
):
    runner = start_worker(server)
    worker = runner.worker
    support.ready(server, worker)
    support.wait_all_acked(worker)
    server.shutdown()
    # Offline: Ana takes SC-1 ...
    take = worker.submit_badge(ANA)
    assert (take.reason, take.decision.slot) == ("granted_take", 1)
    through_the_door(emulator, worker, 1, present=False)
    # ... and brings it back: the local note makes this a return of that very loan.
    back = worker.submit_badge(ANA)
    assert (back.reason, back.decision.slot, back.decision.asset) == ("granted_return", 1, "SC-1")
    assert back.decision.checkout == -worker.state.notes[0].seq  # the local loan
    through_the_door(emulator, worker, 1, present=True)
    offline = worker.journal.pending()
    assert [(e["type"], e.get("open", e.get("present"))) for e in offline] == [
        ("tap", None),
        ("door", True),
        ("presence", False),
        ("door", False),
        ("tap", None),
        ("door", True),
        ("presence", True),
        ("door", False),
    ]
    reconnected_at = time.time()
    server.start()
    server.wait_connections(2)
    support.wait_all_acked(worker)
    replayed = server.events(conn=2)
    # Exactly what was journaled, in seq order, with the times things happened; then the
    # snapshot of the doors, which has the last word.
    assert replayed[: len(offline)] == offline
    assert [e["type"] for e in replayed[len(offline) :]] == ["snapshot"]
    assert all(datetime.fromisoformat(e["at"]).timestamp() <= reconnected_at for e in offline)
    seqs = [e["seq"] for e in server.events()]
    assert seqs == sorted(set(seqs))  # none twice, across both connections
    # Nothing is sent again on the next connection.
    server.drop()
    server.wait_connections(3)
    support.snapshot_of(server, conn=3)
    assert [e["type"] for e in server.events(conn=3)] == ["snapshot"]
    runner.stop()


def test_local_notes_stay_until_the_server_has_the_events_behind_them(
    emulator, server, start_worker
):
    runner = start_worker(server)
    worker = runner.worker
    support.ready(server, worker)
    server.shutdown()
    worker.submit_badge(ANA)
    through_the_door(emulator, worker, 1, present=False)
    (note,) = worker.state.notes
    server.start()
    server.wait_connections(2)
    # The snapshot sent on reconnect was made before the replay: the note stays.
    support.wait_all_acked(worker)
    assert worker.state.notes == [note]
    assert worker.submit_badge(ANA).reason == "granted_return"
    # The next snapshot or delta comes after the server applied the take: the note goes.
    version = server.send_delta({"holders": {"2": holder_data("Ben", max_loans=2)}})
    support.wait_version(worker, version)
    assert worker.state.notes == []
    runner.stop()


def test_past_its_validity_the_snapshot_refuses_takes_and_accepts_returns(
    emulator, start_worker, journal_path
):
    issued = time.time() - 13 * HOUR  # valid for 12 h: stale for an hour
    holders = {
        "1": holder_data("Ana"),
        "2": holder_data("Ben", loans=[support.loan(77, "SC-9", slot=3)]),
    }
    support.journal_world(journal_path, world(issued_at=issued, holders=holders))
    runner = start_worker()
    support.wait_configured(runner.worker)
    refused = runner.worker.submit_badge(ANA)
    assert (refused.granted, refused.reason) == (False, "snapshot_stale")
    assert emulator.unlock_log == []
    back = runner.worker.submit_badge(BEN)
    assert (back.reason, back.decision.slot, back.decision.checkout) == ("granted_return", 3, 77)
    assert unlocked(emulator) == [(0, 2)]
    runner.stop()


def test_limits_hold_offline_and_across_a_restart(emulator, start_worker, journal_path):
    # Ana may hold one scanner. Offline she takes SC-1; her next tap is not a second take (SC-2
    # stays where it is) but the return of SC-1 — after a restart, still with no server, too.
    support.journal_world(journal_path, world())
    first = start_worker()
    support.wait_configured(first.worker)
    assert first.worker.submit_badge(ANA).decision.slot == 1
    through_the_door(emulator, first.worker, 1, present=False)
    (note,) = first.worker.state.notes
    second_tap = first.worker.submit_badge(ANA)
    assert (second_tap.reason, second_tap.decision.checkout) == ("granted_return", note.checkout)
    assert second_tap.decision.slot == 1
    door_seen_open(first.worker, 1)
    first.stop()
    emulator.close_door(0, 0)  # she walked away with it; the door latches again
    second = start_worker()
    support.wait_configured(second.worker)
    # The note came back from the journal; the return hold ended with the door found closed.
    assert second.worker.state.notes == [note]
    assert second.worker.state.holds == {}
    again = second.worker.submit_badge(ANA)
    assert (again.reason, again.decision.asset) == ("granted_return", "SC-1")
    assert (0, 1) not in unlocked(emulator)
    second.stop()
