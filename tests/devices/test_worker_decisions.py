"""The bank worker decides every tap itself, from its signed snapshot, and unlocks at once.

Real worker, real Kerong pty board emulator, the fake protocol-2 server of
test_worker_support.py. A granted tap holds its slot until the door has opened and closed
(the take or return completes locally as the server completes it from the same events), or
until the door has not opened within the reservation timeout.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

from devices.worker_access import REMOTE
from tests.devices import test_worker_support as support
from tests.devices.test_worker_support import ANA, BEN, CLEO, HOUR, SCANNER, UNKNOWN, holder_data

emulator = support.emulator
bus = support.bus
server = support.server
journal_path = support.journal_path
start_worker = support.start_worker

TAP_FIELDS = {
    "type",
    "seq",
    "at",
    "uid",
    "granted",
    "reason",
    "purpose",
    "slot",
    "asset",
    "checkout",
    "holder",
    "version",
    "due_at",
    "shift_end",
    "again",
}


def unlocked(emulator) -> list[tuple[int, int]]:
    return [(board, lock) for _, board, lock in emulator.unlock_log]


def test_a_granted_take_unlocks_at_once_and_the_tap_event_carries_the_decision(
    emulator, server, start_worker
):
    runner = start_worker(server)
    support.ready(server, runner.worker)
    started = time.monotonic()
    tap = runner.worker.submit_badge(ANA)
    elapsed = time.monotonic() - started
    # The unlock frame went out before submit_badge returned: no server round trip.
    assert unlocked(emulator) == [(0, 0)]
    assert elapsed < 0.5, elapsed
    assert (tap.granted, tap.reason, tap.decision.slot) == (True, "granted_take", 1)
    (event,) = server.wait_for("tap", seq=tap.seq)
    assert set(event) == TAP_FIELDS
    assert event["uid"] == ANA
    assert (event["granted"], event["reason"], event["purpose"]) == (True, "granted_take", "take")
    assert (event["slot"], event["asset"], event["holder"]) == (1, "SC-1", 1)
    assert event["checkout"] is None
    assert event["version"] == server.version
    assert event["shift_end"] is None  # Ana's rule needs no shift: due after the type's maximum
    assert abs(event["due_at"] - (time.time() + 12 * HOUR)) < 60
    assert event["again"] is False
    assert abs(datetime.fromisoformat(event["at"]).timestamp() - time.time()) < 60
    hold = runner.worker.state.holds[1]
    assert (hold.purpose, hold.holder, hold.asset) == ("take", 1, "SC-1")
    runner.stop()


def test_a_take_completes_when_the_device_is_out_and_the_door_closed(
    emulator, server, start_worker
):
    runner = start_worker(server)
    support.ready(server, runner.worker)
    tap = runner.worker.submit_badge(ANA)
    (opened,) = server.wait_for("door", slot=1, open=True)  # the unlock opened it
    emulator.set_present(0, 0, False)
    (gone,) = server.wait_for("presence", slot=1, present=False)
    emulator.close_door(0, 0)
    (closed,) = server.wait_for("door", slot=1, open=False)
    assert tap.seq < opened["seq"] < gone["seq"] < closed["seq"]
    state = runner.worker.state
    support.wait_until(lambda: not state.holds, what="the hold to end")
    (note,) = state.notes
    assert (note.kind, note.holder, note.asset, note.seq) == ("take", 1, "SC-1", closed["seq"])
    # Locally Ana holds SC-1 now (under a negative id until the server names the checkout)
    # and slot 1 is empty.
    (held,) = state.snapshot.holders[1].loans
    assert (held.checkout, held.asset, held.status) == (-closed["seq"], "SC-1", "active")
    assert held.due_at == tap.decision.due_at
    assert state.snapshot.slots[1].asset is None
    runner.stop()


def test_a_take_with_the_device_left_inside_changes_nothing(emulator, server, start_worker):
    runner = start_worker(server)
    support.ready(server, runner.worker)
    runner.worker.submit_badge(ANA)
    server.wait_for("door", slot=1, open=True)
    emulator.close_door(0, 0)
    server.wait_for("door", slot=1, open=False)
    state = runner.worker.state
    support.wait_until(lambda: not state.holds, what="the hold to end")
    assert state.notes == []
    assert state.snapshot.slots[1].asset == "SC-1"
    # Still nothing out: the next tap is a take again.
    assert runner.worker.submit_badge(ANA).reason == "granted_take"
    runner.stop()


def test_a_return_opens_a_free_door_and_ends_the_loan(emulator, server, start_worker):
    # Ben has SC-9 out, taken from slot 3 (empty now): it goes back there.
    assert server.access is not None
    server.access["holders"]["2"] = holder_data("Ben", loans=[support.loan(77, "SC-9", slot=3)])
    runner = start_worker(server)
    support.ready(server, runner.worker)
    tap = runner.worker.submit_badge(BEN)
    assert (tap.reason, tap.decision.slot, tap.decision.checkout) == ("granted_return", 3, 77)
    assert unlocked(emulator) == [(0, 2)]
    (event,) = server.wait_for("tap", seq=tap.seq)
    assert (event["purpose"], event["asset"], event["checkout"]) == ("return", "SC-9", 77)
    server.wait_for("door", slot=3, open=True)
    emulator.set_present(0, 2, True)
    emulator.close_door(0, 2)
    (closed,) = server.wait_for("door", slot=3, open=False)
    state = runner.worker.state
    support.wait_until(lambda: not state.holds, what="the hold to end")
    (note,) = state.notes
    assert (note.kind, note.checkout, note.seq) == ("return", 77, closed["seq"])
    assert state.snapshot.holders[2].loans == ()
    slot = state.snapshot.slots[3]
    assert (slot.asset, slot.asset_type, slot.asset_status) == ("SC-9", SCANNER, "available")
    runner.stop()


def test_a_second_tap_shows_the_held_door_again_without_a_second_unlock(
    emulator, server, start_worker
):
    runner = start_worker(server)
    support.ready(server, runner.worker)
    first = runner.worker.submit_badge(ANA)
    again = runner.worker.submit_badge(ANA)
    assert (again.granted, again.decision.again, again.decision.slot) == (True, True, 1)
    assert unlocked(emulator) == [(0, 0)]
    (event,) = server.wait_for("tap", seq=again.seq)
    assert event["again"] is True
    assert first.seq < again.seq
    runner.stop()


def test_denied_taps_open_nothing(emulator, server, start_worker):
    runner = start_worker(server)
    support.ready(server, runner.worker)
    unknown = runner.worker.submit_badge(UNKNOWN)
    suspended = runner.worker.submit_badge(CLEO)
    assert (unknown.granted, unknown.reason) == (False, "badge_unknown")
    assert (suspended.reason, suspended.decision.holder) == ("employee_suspended", 3)
    (event,) = server.wait_for("tap", seq=suspended.seq)
    assert (event["granted"], event["slot"], event["purpose"], event["holder"]) == (
        False,
        None,
        None,
        3,
    )
    assert emulator.unlock_log == []
    assert runner.worker.state.holds == {}
    runner.stop()


def test_without_a_snapshot_every_tap_is_denied_bank_not_ready(emulator, server, start_worker):
    server.access = None  # a server that sends no snapshot
    runner = start_worker(server)
    support.snapshot_of(server)
    (hello,) = server.of_type("hello")
    assert hello["snapshot_version"] is None
    tap = runner.worker.submit_badge(ANA)
    assert (tap.granted, tap.reason) == (False, "bank_not_ready")
    (event,) = server.wait_for("tap", seq=tap.seq)
    assert event["version"] is None
    assert emulator.unlock_log == []
    runner.stop()


def test_a_hold_whose_door_never_opens_lapses(emulator, server, start_worker):
    server.reservation_timeout = 0.3
    # Nobody pulls the door: it latches again at once.
    emulator.on_unlock = emulator.close_door
    runner = start_worker(server)
    support.ready(server, runner.worker)
    tap = runner.worker.submit_badge(ANA)
    (ended,) = server.wait_for("hold_ended")
    assert {k: ended[k] for k in ("slot", "purpose", "checkout")} == {
        "slot": 1,
        "purpose": "take",
        "checkout": None,
    }
    assert ended["seq"] > tap.seq
    assert runner.worker.state.holds == {}
    assert server.of_type("door") == []
    # The slot is free again, for Ana too: a new hold, not "again".
    second = runner.worker.submit_badge(ANA)
    assert (second.reason, second.decision.again) == ("granted_take", False)
    runner.stop()


def test_an_open_door_is_never_given_and_opening_it_by_hand_is_a_plain_door_event(
    emulator, server, start_worker
):
    runner = start_worker(server)
    support.ready(server, runner.worker)
    emulator.open_door(0, 0)  # forced, or left open: the server flags it
    (opened,) = server.wait_for("door", slot=1, open=True)
    assert runner.worker.state.holds == {}
    tap = runner.worker.submit_badge(ANA)
    assert (tap.reason, tap.decision.slot) == ("granted_take", 2)
    assert unlocked(emulator) == [(0, 1)]
    assert opened["seq"] < tap.seq
    runner.stop()


def test_a_remote_open_holds_its_door_until_it_closes(emulator, server, start_worker):
    runner = start_worker(server)
    support.ready(server, runner.worker)
    command_id = str(uuid.uuid4())
    expires = (datetime.now(UTC) + timedelta(seconds=30)).isoformat()
    server.send(
        {
            "type": "command",
            "id": command_id,
            "action": "unlock",
            "slot": 1,
            "board": 0,
            "lock_index": 0,
            "expires_at": expires,
        }
    )
    server.wait_for("command_result", id=command_id, status="done")
    assert runner.worker.state.holds[1].purpose == REMOTE
    # The door held for the remote open is not handed to a tap meanwhile.
    tap = runner.worker.submit_badge(ANA)
    assert tap.decision.slot == 2
    server.wait_for("door", slot=1, open=True)
    emulator.close_door(0, 0)
    server.wait_for("door", slot=1, open=False)
    support.wait_until(lambda: 1 not in runner.worker.state.holds, what="the remote hold to end")
    assert [n.kind for n in runner.worker.state.notes] == []  # the server keeps its books
    runner.stop()
