"""A real bank end to end: emulated hardware, the real worker process, a real Daphne server.

Badge taps go through nfcpy's udp driver from a separate card process; the lock boards are
a KR-CU16 emulator on a pty that the worker opens as a serial port.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

from access.models import AccessEvent, AccessRule, Reason
from assets.models import Checkout, Reservation
from devices.actions import flag_doors_held_open, remote_open
from devices.models import LockerBank, Slot
from lockerhub.models import Alert, AuditEvent
from tests.conftest import World
from tests.e2e.conftest import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("live_db")]


@pytest.fixture(autouse=True)
def any_time(live_db, world: World) -> None:
    # The server process runs on the wall clock; the decision must not depend on the hour.
    AccessRule.objects.filter(pk=world.rule.pk).update(require_shift=False)


def connected(world: World, timeout: float = 20) -> None:
    wait_for(
        lambda: LockerBank.objects.get(pk=world.bank.pk).last_event_seq > 0,
        timeout,
        what="the worker's snapshot",
    )


def slot(world: World, number: int) -> Slot:
    return Slot.objects.get(bank=world.bank, number=number)


def test_take_from_tap_to_active_checkout(world: World, emulated_bank) -> None:
    bank = emulated_bank()
    connected(world)

    bank.tap(world.ana_badge.uid)

    reservation = wait_for(
        lambda: Reservation.objects.filter(status__in=["pending", "opened"]).first(),
        20,
        what="a reservation",
    )
    number = reservation.slot.number
    # The unlock frame reached the lock board on the serial line, exactly once.
    wait_for(lambda: bank.board.unlock_log, 10, what="the unlock frame on the pty")
    assert [(b, i) for _, b, i in bank.board.unlock_log] == [
        (reservation.slot.board, reservation.slot.lock_index)
    ]
    wait_for(
        lambda: slot(world, number).door_state == Slot.DoorState.OPEN, what="the door to read open"
    )

    bank.set_present(number, False)
    wait_for(lambda: slot(world, number).present is False, what="the asset to leave")
    bank.close_door(number)

    checkout = wait_for(
        lambda: Checkout.objects.filter(status=Checkout.Status.ACTIVE).first(),
        what="an active checkout",
    )
    assert checkout.employee_id == world.ana.pk
    assert checkout.slot_out.number == number
    assert checkout.due_at is not None
    assert slot(world, number).asset_id is None


def test_return_puts_the_device_back(world: World, emulated_bank) -> None:
    bank = emulated_bank(auto_person=True)
    connected(world)
    bank.tap(world.ana_badge.uid)
    checkout = wait_for(
        lambda: Checkout.objects.filter(status=Checkout.Status.ACTIVE).first(), 25, what="the take"
    )
    wait_for(
        lambda: slot(world, checkout.slot_out.number).door_state == Slot.DoorState.CLOSED,
        what="door closed",
    )

    bank.tap(world.ana_badge.uid)

    wait_for(
        lambda: Checkout.objects.get(pk=checkout.pk).status == Checkout.Status.RETURNED,
        25,
        what="the return",
    )
    returned = Checkout.objects.get(pk=checkout.pk)
    assert returned.slot_back_id == checkout.slot_out_id  # back where it came from
    assert slot(world, returned.slot_back.number).asset_id == returned.asset_id
    assert len(bank.board.unlock_log) == 2


def test_unknown_badge_is_denied_and_nothing_unlocks(world: World, emulated_bank) -> None:
    bank = emulated_bank()
    connected(world)

    bank.tap("DEADBEEF")

    event = wait_for(
        lambda: AccessEvent.objects.filter(uid="DEADBEEF").first(), 20, what="the access event"
    )
    assert (event.granted, event.reason) == (False, Reason.BADGE_UNKNOWN)
    assert bank.board.unlock_log == []


def test_door_forced_open_is_recorded(world: World, emulated_bank) -> None:
    bank = emulated_bank()
    connected(world)

    bank.open_door(5)

    alert = wait_for(
        lambda: Alert.objects.filter(kind=Alert.Kind.DOOR_FORCED).first(),
        what="a door-forced alert",
    )
    assert alert.bank_id == world.bank.pk
    assert AuditEvent.objects.filter(action="slot.door_forced").count() == 1


def test_door_held_open_past_the_limit_is_recorded(world: World, emulated_bank) -> None:
    LockerBank.objects.filter(pk=world.bank.pk).update(door_held_open_seconds=1)
    bank = emulated_bank()
    connected(world)
    bank.tap(world.ana_badge.uid)
    reservation = wait_for(
        lambda: Reservation.objects.filter(status="opened").first(), 20, what="the door to open"
    )

    assert flag_doors_held_open(timezone.now()) == 0
    opened_at = slot(world, reservation.slot.number).door_opened_at
    assert flag_doors_held_open(opened_at + timedelta(seconds=2)) == 1
    assert flag_doors_held_open(opened_at + timedelta(seconds=30)) == 0  # once per opening
    assert Alert.objects.get(kind=Alert.Kind.DOOR_HELD_OPEN).bank_id == world.bank.pk


def test_the_same_command_delivered_twice_unlocks_once(world: World, emulated_bank) -> None:
    bank = emulated_bank(through_proxy=True)
    connected(world)

    def last_seq() -> int:
        return LockerBank.objects.get(pk=world.bank.pk).last_event_seq

    reservation = remote_open(
        slot(world, 6), user=AnonymousUser(), actor="api:test", reason="Check the strap"
    )
    wait_for(lambda: bank.board.unlock_log, what="the first unlock")
    # The door opening and the command's result come back as events; wait until they settle.
    wait_for(lambda: slot(world, 6).door_state == Slot.DoorState.OPEN, what="the door to open")
    wait_for(
        lambda: Reservation.objects.get(pk=reservation.pk).status == "opened", what="the opening"
    )
    # As if the server had lost track of it: the command is pending again, and the connection
    # drops, so the server sends it once more on reconnect.
    Reservation.objects.filter(pk=reservation.pk).update(status="pending")
    seq = last_seq()
    bank.proxy.drop_connections()
    # The worker answers the repeat with the original result (one more event) and unlocks nothing.
    wait_for(lambda: last_seq() > seq + 1, 20, what="the repeated command's result")
    assert [(b, i) for _, b, i in bank.board.unlock_log] == [(0, 5)]


def test_garbage_on_the_serial_line_is_skipped(world: World, emulated_bank) -> None:
    bank = emulated_bank()
    connected(world)

    for _ in range(5):
        bank.board.inject(b"\x02\x00\x35\xff\xff\x00\x00\x03\x00" + b"\xaa\x55\x02\x02\x03noise")
    bank.open_door(4)

    wait_for(
        lambda: slot(world, 4).door_state == Slot.DoorState.OPEN,
        what="the door event despite garbage",
    )
    bank.close_door(4)
    wait_for(lambda: slot(world, 4).door_state == Slot.DoorState.CLOSED, what="the door to close")


def test_worker_killed_mid_flow_replays_without_applying_twice(world: World, emulated_bank) -> None:
    bank = emulated_bank(through_proxy=True)
    connected(world)
    # The server keeps hearing the worker but its acknowledgements are lost on the way back.
    bank.proxy.downstream = False
    bank.open_door(3)
    wait_for(
        lambda: slot(world, 3).door_state == Slot.DoorState.OPEN,
        what="the forced door to be applied",
    )
    # Then the line goes dead both ways: these events stay in the worker's journal only.
    bank.proxy.upstream = False
    bank.set_present(3, False)
    bank.close_door(3)
    time.sleep(1.0)  # a few poll cycles, so the worker journals them
    assert slot(world, 3).door_state == Slot.DoorState.OPEN
    seq_before = LockerBank.objects.get(pk=world.bank.pk).last_event_seq

    bank.kill_worker()  # SIGKILL: no clean shutdown
    bank.proxy.upstream = bank.proxy.downstream = True
    bank.proxy.drop_connections()
    bank.start_worker()  # same journal file

    wait_for(
        lambda: slot(world, 3).door_state == Slot.DoorState.CLOSED,
        30,
        what="the replayed door close",
    )
    wait_for(lambda: slot(world, 3).present is False, what="the replayed presence")
    assert LockerBank.objects.get(pk=world.bank.pk).last_event_seq > seq_before
    # The forced opening, applied before the crash and replayed after it, counts once.
    assert AuditEvent.objects.filter(action="slot.door_forced").count() == 1
    assert Alert.objects.filter(kind=Alert.Kind.DOOR_FORCED).count() == 1
