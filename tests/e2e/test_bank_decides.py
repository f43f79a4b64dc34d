"""Decisions at the bank, end to end: the real worker process with a pty lock board and an nfcpy
udp card, a real Daphne, the test database, and a TCP proxy a test can cut.

The bank decides every tap from its signed snapshot; these tests cut the network, stop Redis,
revoke people and feed the server a bad event, and check what the bank and the server do.
"""

from __future__ import annotations

import time

import pytest

from access.actions import issue_badge, offboard_employee, revoke_badge
from access.models import AccessEvent, AccessRule, Reason
from assets.models import Checkout
from devices.emulators.bank import EmulatedBank
from devices.models import FailedDeviceEvent, LockerBank, Slot
from lockerhub.audit import SYSTEM
from lockerhub.models import Alert
from tests.conftest import World, make_employee
from tests.e2e.conftest import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("live_db")]


@pytest.fixture(autouse=True)
def any_time(live_db, world: World) -> None:
    # The server process runs on the wall clock; the decision must not depend on the hour.
    AccessRule.objects.filter(pk=world.rule.pk).update(require_shift=False)


def snapshot_sent(world: World, bank: LockerBank | None = None) -> None:
    """Wait until the server has sent the bank its access snapshot and the worker its state."""
    bank = bank or world.bank
    wait_for(
        lambda: (
            LockerBank.objects.get(pk=bank.pk).snapshot_version >= 1
            and LockerBank.objects.get(pk=bank.pk).last_event_seq > 0
        ),
        20,
        what=f"{bank.code} to get its snapshot",
    )
    time.sleep(0.3)  # the snapshot's bytes are on their way to the worker: let them land


def cut(bank: EmulatedBank) -> None:
    """The network between the bank and the server goes dead both ways."""
    bank.proxy.upstream = bank.proxy.downstream = False
    bank.proxy.drop_connections()


def restore(bank: EmulatedBank) -> None:
    bank.proxy.upstream = bank.proxy.downstream = True
    bank.proxy.drop_connections()


def unlocks(bank: EmulatedBank, count: int, timeout: float = 10) -> None:
    wait_for(lambda: len(bank.board.unlock_log) >= count, timeout, what=f"{count} unlock(s)")


def test_an_offline_take_and_return_are_recorded_once_on_reconnect(
    world: World, emulated_bank
) -> None:
    bank = emulated_bank(through_proxy=True, auto_person=True)
    snapshot_sent(world)
    cut(bank)
    cut_at = time.time()

    bank.tap(world.ana_badge.uid)  # take: the emulated person lifts the device, shuts the door
    unlocks(bank, 1)
    time.sleep(2.0)  # the person takes it and closes the door; the worker journals it all
    bank.tap(world.ana_badge.uid)  # and puts it back
    unlocks(bank, 2)
    time.sleep(2.0)
    assert not AccessEvent.objects.exists()  # the server has heard nothing yet

    restore(bank)
    checkout = wait_for(
        lambda: Checkout.objects.filter(status=Checkout.Status.RETURNED).first(),
        30,
        what="the replayed take and return",
    )
    time.sleep(1.0)  # anything replayed twice would land now
    assert Checkout.objects.count() == 1
    assert AccessEvent.objects.filter(granted=True).count() == 2
    # Recorded with the times they happened, while the server was out of reach.
    assert cut_at <= checkout.taken_at.timestamp() < checkout.returned_at.timestamp()
    assert checkout.returned_at.timestamp() < cut_at + 8
    assert checkout.slot_back_id == checkout.slot_out_id
    assert not Alert.objects.filter(kind=Alert.Kind.DOOR_FORCED).exists()
    assert not Alert.objects.filter(kind=Alert.Kind.DECISION_MISMATCH).exists()


def test_a_revocation_denies_at_every_bank_within_a_second(world: World, emulated_bank) -> None:
    banks = {
        code: emulated_bank(bank=model)
        for code, model in (("BANK-A", world.bank), ("BANK-B", world.other_bank))
    }
    snapshot_sent(world, world.bank)
    snapshot_sent(world, world.other_bank)

    offboard_employee(world.ana, actor=SYSTEM)
    time.sleep(1.0)  # the bound itself: a tap one second after the offboarding commits
    for emulated in banks.values():
        emulated.tap(world.ana_badge.uid)

    for code, emulated in banks.items():
        event = wait_for(
            lambda code=code: AccessEvent.objects.filter(bank__code=code).first(),
            20,
            what=f"the tap at {code}",
        )
        assert (event.granted, event.reason) == (False, Reason.EMPLOYEE_OFFBOARDED)
        assert emulated.board.unlock_log == []


def test_a_grant_the_server_disagrees_with_raises_one_alert(world: World, emulated_bank) -> None:
    bank = emulated_bank(through_proxy=True)
    snapshot_sent(world)
    cut(bank)
    revoke_badge(world.ana_badge, actor=SYSTEM, reason="reported stolen")

    bank.tap(world.ana_badge.uid)  # the bank has not heard: it grants from its snapshot
    unlocks(bank, 1)
    time.sleep(1.5)  # past the reader's debounce: this is a second tap, not the same one
    bank.tap(world.ana_badge.uid)  # again, the same door: still one case
    time.sleep(1.0)
    restore(bank)

    alert = wait_for(
        lambda: Alert.objects.filter(kind=Alert.Kind.DECISION_MISMATCH).first(),
        30,
        what="the disagreement alert",
    )
    wait_for(lambda: AccessEvent.objects.count() == 2, 20, what="both taps recorded")
    assert Alert.objects.filter(kind=Alert.Kind.DECISION_MISMATCH).count() == 1
    assert alert.details["bank_decision"] == "granted_take"
    assert alert.details["server_decision"] == "badge_revoked"
    assert alert.details["server_snapshot_version"] > alert.details["bank_snapshot_version"]


def test_a_stale_snapshot_refuses_takes_but_takes_returns(
    world: World, emulated_bank, start_daphne
) -> None:
    bo = make_employee("E1002", "Bo", world.department, site=world.site)
    bo_badge = issue_badge(bo, "04B0B0B0B0B0B0", actor=SYSTEM)
    server = start_daphne(LOCKERHUB_SNAPSHOT_VALID_SECONDS="6").url
    bank = emulated_bank(through_proxy=True, auto_person=True, server=server)
    snapshot_sent(world)
    bank.tap(world.ana_badge.uid)  # Ana takes a device while all is well
    wait_for(
        lambda: Checkout.objects.filter(status=Checkout.Status.ACTIVE).exists(), 20, what="the take"
    )
    cut(bank)
    time.sleep(7.0)  # past the snapshot's validity, with no server to renew it

    bank.tap(bo_badge.uid)  # a new take: refused
    time.sleep(1.0)
    assert len(bank.board.unlock_log) == 1
    bank.tap(world.ana_badge.uid)  # a return: accepted
    unlocks(bank, 2)

    restore(bank)
    wait_for(
        lambda: Checkout.objects.filter(status=Checkout.Status.RETURNED).exists(),
        30,
        what="the return",
    )
    stale = wait_for(
        lambda: AccessEvent.objects.filter(uid=bo_badge.uid).first(), 20, what="Bo's tap"
    )
    assert (stale.granted, stale.reason) == (False, "snapshot_stale")
    # A stale bank refusing is no disagreement to alert on.
    assert not Alert.objects.filter(kind=Alert.Kind.DECISION_MISMATCH).exists()


def test_a_bank_works_with_redis_stopped(world: World, emulated_bank, start_daphne) -> None:
    # Nothing listens on port 1: anything on the device path that needed Redis would fail.
    server = start_daphne(REDIS_URL="redis://127.0.0.1:1/0").url
    bank = emulated_bank(server=server)
    snapshot_sent(world)

    bank.tap(world.ana_badge.uid)
    unlocks(bank, 1)
    event = wait_for(
        lambda: AccessEvent.objects.filter(granted=True).first(), 20, what="the tap recorded"
    )
    assert event.reason == Reason.GRANTED_TAKE
    number = event.slot.number
    wait_for(
        lambda: Slot.objects.get(bank=world.bank, number=number).door_state == "open",
        what="the door event applied",
    )


def test_an_event_that_cannot_be_applied_does_not_stall_the_bank(
    world: World, emulated_bank
) -> None:
    bank = emulated_bank(auto_person=True)
    snapshot_sent(world)
    bank.tap(world.ana_badge.uid)
    checkout = wait_for(
        lambda: Checkout.objects.filter(status=Checkout.Status.ACTIVE).first(), 20, what="the take"
    )
    # The records drift from the world: someone typed the lent device into another slot.
    Slot.objects.filter(bank=world.other_bank, number=3).update(asset=checkout.asset)

    bank.tap(world.ana_badge.uid)  # the return's door closing now cannot be applied
    failed = wait_for(
        lambda: FailedDeviceEvent.objects.first(), 30, what="the failed event to be kept"
    )
    assert "IntegrityError" in failed.error
    assert Alert.objects.filter(kind=Alert.Kind.DEVICE_EVENT_FAILED).count() == 1

    # The bank goes on: the next tap is answered and recorded.
    bank.tap("DEADBEEF")
    wait_for(lambda: AccessEvent.objects.filter(uid="DEADBEEF").exists(), 20, what="the next tap")
    assert LockerBank.objects.get(pk=world.bank.pk).last_event_seq > failed.seq
