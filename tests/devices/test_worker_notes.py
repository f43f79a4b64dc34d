"""The worker's local notes of takes and returns, on their own: how they change the snapshot a
tap is decided on, and when a snapshot from the server makes them redundant."""

from __future__ import annotations

import time

from access import core
from devices.worker_access import Hold, Note, note_for, still_unconfirmed, with_notes
from tests.devices.test_worker_support import SCANNER, holder_data, loan, world


def snapshot(**kwargs) -> core.Snapshot:
    return core.Snapshot.from_data(world(**kwargs))


def take_note(seq: int = 40) -> Note:
    hold = Hold(1, "take", holder=1, asset="SC-1", asset_type=SCANNER, due_at=time.time() + 60)
    note = note_for(hold, seq, time.time())
    assert note is not None
    return note


def never_acked(seq: int) -> bool:
    return False


def test_a_take_gives_the_holder_the_loan_and_empties_the_slot():
    note = take_note()
    seen = with_notes(snapshot(), [note])
    assert seen is not None
    (held,) = seen.holders[1].loans
    assert (held.checkout, held.asset, held.status, held.slot) == (-40, "SC-1", "active", 1)
    assert seen.slots[1].asset is None
    assert seen.slots[2].asset == "SC-2"  # nothing else moves


def test_a_return_ends_the_loan_and_stocks_the_slot():
    holders = {"2": holder_data("Ben", loans=[loan(77, "SC-9", slot=3)])}
    hold = Hold(3, "return", holder=2, checkout=77, asset="SC-9", asset_type=SCANNER)
    note = note_for(hold, 41, time.time())
    seen = with_notes(snapshot(holders=holders), [note])
    assert seen is not None
    assert seen.holders[2].loans == ()
    assert (seen.slots[3].asset, seen.slots[3].asset_status) == ("SC-9", "available")


def test_a_remote_open_leaves_no_note():
    assert note_for(Hold(1, "remote"), 42, time.time()) is None


def test_notes_go_once_the_server_shows_them_or_had_their_events_before():
    take = take_note(40)
    returned = Note("return", 41, 2, 3, "SC-9", SCANNER, 77, None, time.time())
    holders = {
        "1": holder_data("Ana"),
        "2": holder_data("Ben", loans=[loan(77, "SC-9", slot=3)]),
    }
    # The server knows of neither yet (a snapshot made before the replay): both stay.
    assert still_unconfirmed(snapshot(holders=holders), [take, returned], never_acked) == [
        take,
        returned,
    ]
    # The server lists SC-1 as Ana's and SC-9 as back: both go.
    confirmed = {
        "1": holder_data("Ana", loans=[loan(501, "SC-1", slot=1)]),
        "2": holder_data("Ben"),
    }
    assert still_unconfirmed(snapshot(holders=confirmed), [take, returned], never_acked) == []
    # The server had acknowledged the take's event before this snapshot came: it goes too.
    assert still_unconfirmed(snapshot(holders=holders), [take], lambda seq: seq == 40) == []


def test_a_take_the_server_has_only_reserved_stays_a_loan_at_the_bank():
    # The server has the tap (a reserved loan) but not yet the door closing on an empty slot:
    # the bank's note that the device is out must stay, or the next tap would think it in.
    take = take_note(40)
    reserved = {"1": holder_data("Ana", loans=[loan(501, "SC-1", slot=1, status="reserved")])}
    assert still_unconfirmed(snapshot(holders=reserved), [take], never_acked) == [take]
    seen = with_notes(snapshot(holders=reserved), [take])
    assert seen is not None
    (held,) = seen.holders[1].loans
    assert (held.asset, held.status) == ("SC-1", "active")
    assert seen.slots[1].asset is None
